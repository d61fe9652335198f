"""`ls --sort/--where`: read every version's record (manifest GETs in parallel, no blob) and select.

Answers "which version scored best on dataset v3?": `ls REPO --sort accuracy --where dataset=v3` keeps the
versions whose accuracy was measured on v3 and orders them best first. The conditions are the typed query
language of `record/where.py` (params, metrics, tags, datasets) matched against each version's `subject`;
the test-run metrics come from the newest test report attached to each version (its annotations: one
referrers listing, no blob), read only when a sort or condition names one or the caller asks for them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.version import InvalidVersion
from packaging.version import Version as PackagingVersion

from modelpack.errors import ContentError, NotFoundError, UsageError
from modelpack.evidence import evidence, labels
from modelpack.evidence.labels import Label
from modelpack.oci.target import Target
from modelpack.packfile.gates import MEASURED as TEST_METRICS
from modelpack.record import where as q
from modelpack.record.record import flatten
from modelpack.record.where import Condition, Subject
from modelpack.release.view import ReleaseView, load_release

WORKERS = 8
# Tags the referrers-API fallback writes (`sha256-<hex>`): indexes of test reports, never releases.
_REFERRER_TAG = re.compile(r"^sha(256-[0-9a-f]{64}|512-[0-9a-f]{128})(\..*)?$")


@dataclass(frozen=True)
class Version:
    tag: str
    release: ReleaseView | None  # None when records were not read
    tested: Mapping[str, float] = field(default_factory=dict)  # metrics of the newest test report
    test_passed: bool | None = None  # None: no report attached (or reports were not read)
    labels: Mapping[str, Label] = field(
        default_factory=dict
    )  # labels on (archived), when referrers were read

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


def _tested(name: str | None) -> bool:
    """A number only a test report has: latency and size, or the served model's (`measured.f1_macro`)."""
    return name is not None and (name in TEST_METRICS or name.startswith(("measured.", "fairness.", "load.")))


def needs_reports(sort: str | None, wheres: Sequence[Condition]) -> bool:
    return _tested(sort) or any(w.kind in ("name", "metric") and _tested(w.key) for w in wheres)


def subject(v: Version, tags: Iterable[str] = ()) -> Subject:
    """What `--where` reads of a version: its record's params, metrics (with the test report's), datasets,
    and `tags` (every tag naming the same release)."""
    assert v.release is not None
    rec = v.release.record
    return Subject(
        params=flatten(rec.params),
        metrics={**v.tested, **{k: m.value for k, m in rec.metrics.items()}},
        measured_on={k: m.dataset for k, m in rec.metrics.items() if m.dataset is not None},
        tags=frozenset({v.tag, *tags, *v.labels}),  # `tag=archived` finds the archived
        datasets=tuple(q.DatasetFact(d.name, d.sha256, d.digest, d.ref) for d in rec.datasets),
    )


def subjects(versions: Sequence[Version]) -> dict[str, Subject]:
    """Each read version's subject by tag, with the tags that name the same digest."""
    by_digest: dict[str, set[str]] = {}
    for v in versions:
        if v.release is not None:
            by_digest.setdefault(v.release.digest, set()).add(v.tag)
    return {v.tag: subject(v, by_digest[v.release.digest]) for v in versions if v.release is not None}


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


def resolve(wheres: Sequence[Condition], versions: Sequence[Version]) -> tuple[list[Condition], list[str]]:
    """Each condition checked against what `versions` record (a typo is an error with a suggestion; a bare
    name that is a param, not a metric, becomes the param and a note says so)."""
    subs = list(subjects(versions).values())
    out: list[Condition] = []
    notes: list[str] = []
    for w in wheres:
        c, note = q.resolve(w, subs, TEST_METRICS)
        out.append(c)
        notes += [note] if note else []
    return out, notes


def spanning(wheres: Sequence[Condition], chosen: Sequence[Version]) -> list[str]:
    """A note for each `dataset=NAME` whose answer mixes dataset versions under that name."""
    subs = list(subjects(chosen).values())
    return [n for n in (q.note_spanned(w, subs) for w in wheres) if n]


def select(
    versions: Sequence[Version],
    wheres: Sequence[Condition] = (),
    sort: str | None = None,
    ascending: bool = False,
) -> list[Version]:
    """Versions meeting every (resolved) condition; with `sort`, by that metric (best first unless
    `ascending`), versions without the metric last."""
    subs = subjects(versions)
    kept = [v for v in versions if v.tag in subs and all(q.matches(w, subs[v.tag], sort) for w in wheres)]
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
        known |= set(v.tested)
    if name in known:
        return
    close = difflib.get_close_matches(name, sorted(known), n=1)
    raise UsageError(
        f"{flag} {name!r}: no version records that metric",
        hint=f"did you mean {close[0]!r}?" if close else f"metrics: {', '.join(sorted(known))}",
    )


def _with_report(target: Target, v: Version) -> Version:
    """The newest test report's verdict and metrics, and the labels on: from one referrers listing."""
    assert v.release is not None
    referrers = target.referrers(v.release.digest)
    v = replace(v, labels=labels.current(referrers))
    reports = [d for d in referrers if d.artifact_type == evidence.REPORT_TYPE]
    newest = max(
        reports, key=lambda d: ((d.annotations or {}).get(evidence.ANN_CREATED, ""), d.digest), default=None
    )
    if newest is None:
        return v
    passed = (newest.annotations or {}).get(evidence.ANN_PASSED) == "true"
    tested = {k: x for k, x in evidence.measured(newest).items() if _tested(k)}
    return replace(v, tested=tested, test_passed=passed)
