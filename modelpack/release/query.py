"""`ls --sort/--where`: read every version's record (manifest GETs in parallel, no blob) and select.

Answers "which version scored best on dataset v3?": `ls REPO --sort accuracy --where dataset=v3` keeps the
versions whose accuracy was measured on v3 and orders them best first. Conditions are `dataset=NAME`,
`param=KEY=VALUE`, or a gate (`accuracy>=0.9`, `latency_p95_ms<=5`); the test-run metrics come from the
newest test report attached to each version (its annotations: one referrers listing, no blob), read only
when a sort or condition names one or the caller asks for them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from packaging.version import InvalidVersion
from packaging.version import Version as PackagingVersion

from modelpack.errors import ContentError, InputError, NotFoundError, UsageError
from modelpack.evidence import evidence
from modelpack.oci.target import Target
from modelpack.packfile.gates import MEASURED as TEST_METRICS
from modelpack.packfile.gates import parse_gate
from modelpack.record.record import Record
from modelpack.release.diff import flatten
from modelpack.release.view import ReleaseView, load_release

WORKERS = 8
# Tags the referrers-API fallback writes (`sha256-<hex>`): indexes of test reports, never releases.
_REFERRER_TAG = re.compile(r"^sha(256-[0-9a-f]{64}|512-[0-9a-f]{128})(\..*)?$")


_GATE_OP = re.compile(r"(>=|<=|==|>|<)")


@dataclass(frozen=True)
class Where:
    """One `--where` condition: `dataset=NAME` (or a `sha256:` hash prefix), `param=KEY=VALUE`, or a gate
    on a metric (`accuracy>=0.9`)."""

    field: str
    key: str
    value: Any = None

    @property
    def published(self) -> bool:
        """`dataset=REG/REPO:TAG`: a published dataset, matched by the digest the caller resolves."""
        return self.field == "dataset" and "/" in self.key

    @classmethod
    def parse(cls, text: str) -> Where:
        if _GATE_OP.search(text) and not text.startswith(("param=", "dataset=")):
            try:
                gate = parse_gate(text)
            except InputError as e:
                raise UsageError(f"--where {e.message}", hint=e.hint) from None
            return cls("gate", gate.metric, gate)
        kind, sep, rest = text.partition("=")
        if sep and kind == "dataset" and rest:
            return cls("dataset", rest)
        if sep and kind == "param":
            key, sep2, value = rest.partition("=")
            if sep2 and key:
                return cls("param", key, _typed(value))
        raise UsageError(
            f"--where {text!r} is not understood",
            hint="use dataset=NAME, param=KEY=VALUE or a gate such as accuracy>=0.9",
        )

    def matches(
        self, record: Record, metric: str | None = None, tested: Mapping[str, float] | None = None
    ) -> bool:
        """`tested`: the metrics of the version's test report, for gates on latency or image size."""
        if self.field == "gate":
            m = record.metrics.get(self.key)
            value = m.value if m is not None else (tested or {}).get(self.key)
            return value is not None and bool(self.value.passes(value))
        if self.field == "param":
            params = flatten(record.params)
            return self.key in params and _equal(params[self.key], self.value)
        if self.value is not None:  # a published dataset's reference, resolved to its digest
            return _on_published(record, str(self.value), metric)
        return _on_dataset(record, self.key, metric)


@dataclass(frozen=True)
class Version:
    tag: str
    release: ReleaseView | None  # None when records were not read
    tested: Mapping[str, float] = field(default_factory=dict)  # metrics of the newest test report
    test_passed: bool | None = None  # None: no report attached (or reports were not read)

    @property
    def alias(self) -> bool:
        """A tag other than the release's own version (prod, staging, latest): it points at one."""
        return self.release is not None and self.release.record.version != self.tag

    def metric(self, name: str) -> float | None:
        if self.release is None:
            return None
        m = self.release.record.metrics.get(name)
        return m.value if m is not None else self.tested.get(name)


def release_tags(tags: Iterable[str]) -> list[str]:
    """The tags that may be releases, versions first in version order (1.2.0 before 1.10.0), then the
    other tags (environments, latest) by name: referrer fallback tags are bookkeeping, not versions."""
    return sorted((t for t in tags if not _REFERRER_TAG.match(t)), key=_tag_order)


def _tag_order(tag: str) -> tuple[int, Any, str]:
    try:
        return (0, PackagingVersion(tag), tag)
    except InvalidVersion:
        return (1, 0, tag)


def needs_reports(sort: str | None, wheres: Sequence[Where]) -> bool:
    return sort in TEST_METRICS or any(w.field == "gate" and w.key in TEST_METRICS for w in wheres)


def read_versions(
    target: Target, tags: Sequence[str], *, prefix: str = "", workers: int = WORKERS, reports: bool = False
) -> list[Version]:
    """The release behind each tag (`prefix + tag` in the target), read in parallel, with its newest test
    report's metrics when `reports`; tags that are not modelpack releases, or vanished meanwhile, are left
    out. Order follows `tags`."""

    def one(tag: str) -> Version | None:
        try:
            release = load_release(target, prefix + tag, layers=False)
        except (ContentError, NotFoundError):  # NotAReleaseError, a foreign manifest, a tag deleted since
            return None
        if not reports:
            return Version(tag, release)
        return _with_report(target, Version(tag, release))

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
        if v.release is not None and all(w.matches(v.release.record, sort, v.tested) for w in wheres)
    ]
    if sort is None:
        return kept
    scored = [v for v in kept if v.metric(sort) is not None]
    missing = [v for v in kept if v.metric(sort) is None]
    scored.sort(key=lambda v: v.metric(sort) or 0.0, reverse=not ascending)
    return scored + missing


def check_metric(versions: Sequence[Version], name: str, flag: str) -> None:
    """A metric no version records is a typo far more often than a question: say so, with a suggestion."""
    known = set(TEST_METRICS)
    for v in versions:
        if v.release is not None:
            known |= set(v.release.record.metrics)
    if name in known:
        return
    close = difflib.get_close_matches(name, sorted(known), n=1)
    raise UsageError(
        f"{flag} {name!r}: no version records that metric",
        hint=f"did you mean {close[0]!r}?" if close else f"metrics: {', '.join(sorted(known))}",
    )


def _with_report(target: Target, v: Version) -> Version:
    assert v.release is not None
    newest = evidence.newest_report(target, v.release.digest)
    if newest is None:
        return v
    passed = (newest.annotations or {}).get(evidence.ANN_PASSED) == "true"
    tested = {k: x for k, x in evidence.measured(newest).items() if k in TEST_METRICS}
    return replace(v, tested=tested, test_passed=passed)


def _on_dataset(record: Record, name: str, metric: str | None) -> bool:
    """Measured on `name`: the sort metric's dataset is `name`; when the metric names no dataset (or no
    metric is sorted on), the record lists `name` among its datasets or another metric was measured on it."""
    if metric is not None and metric in record.metrics and record.metrics[metric].dataset is not None:
        return _same_dataset(record, record.metrics[metric].dataset, name)
    if any(_same_dataset(record, m.dataset, name) for m in record.metrics.values() if m.dataset):
        return True
    return any(d.name == name or _hash_match(d.sha256, name) for d in record.datasets)


def _on_published(record: Record, digest: str, metric: str | None) -> bool:
    """Like `_on_dataset`, for `dataset=REG/REPO:TAG` resolved to its artifact digest: entries match by
    that digest whatever the model calls them, so a dataset renamed in modelpack.yaml still matches."""
    names = {d.name for d in record.datasets if d.digest == digest}
    if metric is not None and metric in record.metrics and record.metrics[metric].dataset is not None:
        return record.metrics[metric].dataset in names
    return bool(names)


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
