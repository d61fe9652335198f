"""`ls --sort/--where`: read every version's record (manifest GETs in parallel, no blob) and select.

Answers "which version scored best on dataset v3?": `ls REPO --sort accuracy --where dataset=v3` keeps the
versions whose accuracy was measured on v3 and orders them best first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import yaml

from modelpack.errors import InputError, NotFoundError, UsageError
from modelpack.oci.target import Target
from modelpack.record.record import Record
from modelpack.release.diff import flatten
from modelpack.release.view import ReleaseView, load_release

WORKERS = 8
# Tags the referrers-API fallback writes (`sha256-<hex>`): indexes of test reports, never releases.
_REFERRER_TAG = re.compile(r"^sha(256-[0-9a-f]{64}|512-[0-9a-f]{128})(\..*)?$")


@dataclass(frozen=True)
class Where:
    """One `--where` condition: `dataset=NAME` (or a `sha256:` hash prefix) or `param=KEY=VALUE`."""

    field: str
    key: str
    value: Any = None

    @classmethod
    def parse(cls, text: str) -> Where:
        kind, sep, rest = text.partition("=")
        if sep and kind == "dataset" and rest:
            return cls("dataset", rest)
        if sep and kind == "param":
            key, sep2, value = rest.partition("=")
            if sep2 and key:
                return cls("param", key, _typed(value))
        raise UsageError(
            f"--where {text!r} is not understood",
            hint="use dataset=NAME or param=KEY=VALUE, e.g. --where dataset=iris-test --where param=lr=0.1",
        )

    def matches(self, record: Record, metric: str | None = None) -> bool:
        if self.field == "param":
            params = flatten(record.params)
            return self.key in params and _equal(params[self.key], self.value)
        return _on_dataset(record, self.key, metric)


@dataclass(frozen=True)
class Version:
    tag: str
    release: ReleaseView | None  # None when records were not read

    @property
    def alias(self) -> bool:
        """A tag other than the release's own version (prod, staging, latest): it points at one."""
        return self.release is not None and self.release.record.version != self.tag

    def metric(self, name: str) -> float | None:
        if self.release is None:
            return None
        m = self.release.record.metrics.get(name)
        return m.value if m is not None else None


def release_tags(tags: Iterable[str]) -> list[str]:
    """The tags that may be releases: referrer fallback tags are bookkeeping, not versions."""
    return [t for t in tags if not _REFERRER_TAG.match(t)]


def read_versions(
    target: Target, tags: Sequence[str], *, prefix: str = "", workers: int = WORKERS
) -> list[Version]:
    """The release behind each tag (`prefix + tag` in the target), read in parallel; tags that are not
    modelpack releases, or vanished meanwhile, are left out. Order follows `tags`."""

    def one(tag: str) -> Version | None:
        try:
            return Version(tag, load_release(target, prefix + tag, layers=False))
        except (InputError, NotFoundError):  # NotAReleaseError, a foreign manifest, a tag deleted since
            return None

    if not tags:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tags)))) as pool:
        found = list(pool.map(one, tags))
    return [v for v in found if v is not None]


def select(
    versions: Sequence[Version],
    wheres: Sequence[Where] = (),
    sort: str | None = None,
    ascending: bool = False,
) -> list[Version]:
    """Versions meeting every condition; with `sort`, by that metric (best first unless `ascending`),
    versions without the metric last."""
    kept = [
        v
        for v in versions
        if v.release is not None and all(w.matches(v.release.record, sort) for w in wheres)
    ]
    if sort is None:
        return kept
    scored = [v for v in kept if v.metric(sort) is not None]
    missing = [v for v in kept if v.metric(sort) is None]
    scored.sort(key=lambda v: v.metric(sort) or 0.0, reverse=not ascending)
    return scored + missing


def _on_dataset(record: Record, name: str, metric: str | None) -> bool:
    """Measured on `name`: the sort metric's dataset is `name`; when the metric names no dataset (or no
    metric is sorted on), the record lists `name` among its datasets or another metric was measured on it."""
    if metric is not None and metric in record.metrics and record.metrics[metric].dataset is not None:
        return _same_dataset(record, record.metrics[metric].dataset, name)
    if any(_same_dataset(record, m.dataset, name) for m in record.metrics.values() if m.dataset):
        return True
    return any(d.name == name or _hash_match(d.sha256, name) for d in record.datasets)


def _same_dataset(record: Record, dataset: str | None, wanted: str) -> bool:
    if dataset == wanted:
        return True
    entry = next((d for d in record.datasets if d.name == dataset), None)
    return entry is not None and _hash_match(entry.sha256, wanted)


def _hash_match(sha256: str | None, wanted: str) -> bool:
    # A dataset version may be named by its hash: `dataset=sha256:1a2b3c4d` (a prefix of 8+ hex digits).
    return (
        sha256 is not None
        and wanted.startswith("sha256:")
        and len(wanted) >= 15
        and sha256.startswith(wanted)
    )


def _typed(text: str) -> Any:
    """`lr=0.1` means the number 0.1, `shuffle=true` the boolean: read the value as YAML scalars are."""
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def _equal(actual: Any, wanted: Any) -> bool:
    if actual == wanted:
        return True
    if isinstance(actual, int | float) and isinstance(wanted, int | float):
        return float(actual) == float(wanted)
    return str(actual) == str(wanted)
