"""`runs ls --where --status --since --sort`: select and order run summaries (pure; the listing reads them).

The conditions are the one `--where` language (record/where.py): `alpha<0.001` is a param range when no run
records a metric called alpha, `1e-4` equals `0.0001`, `tag=sweep`, `dataset=REG/REPO:TAG` by the digest
the caller resolved.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelpack.errors import UsageError
from modelpack.record import where
from modelpack.runs.record import STATUSES, Summary

_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def subject(s: Summary) -> where.Subject:
    facts = tuple(
        where.DatasetFact(name=ref, digest=d, ref=ref)
        for ref, d in zip(s.dataset_refs, s.datasets, strict=False)
    )
    return where.Subject(params=s.params, metrics=s.metrics, tags=frozenset(s.tags), datasets=facts)


def parse_time(text: str, now: datetime) -> datetime:
    """`2026-12-01`, `2026-12-01T10:00:00Z`, or an age: `30m`, `2h`, `7d`."""
    m = _AGO.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a time", hint="e.g. 2026-12-01, 2026-12-01T10:00:00Z or 2h, 7d"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def started_at(s: Summary) -> datetime:
    return datetime.fromisoformat(s.started.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Query:
    conditions: tuple[where.Condition, ...] = ()
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    sort: str | None = None
    ascending: bool = False
    limit: int | None = None


def check_statuses(statuses: Sequence[str]) -> tuple[str, ...]:
    for s in statuses:
        if s not in STATUSES:
            raise UsageError(f"--status {s!r} is not a run status", hint=f"one of {', '.join(STATUSES)}")
    return tuple(statuses)


def resolve(query: Query, runs: Sequence[Summary]) -> tuple[Query, list[str]]:
    """Bare names made params or metrics against what the runs record (with notes); a sort metric no run
    records is an error with a suggestion."""
    # resolving needs only which params and metrics exist: one light subject carrying their names
    names = where.Subject(params=dict.fromkeys({k for s in runs for k in s.params}),
                          metrics=dict.fromkeys({k for s in runs for k in s.metrics}, 0.0))  # fmt: skip
    subjects = [names] if runs else []
    out, notes = [], []
    for c in query.conditions:
        resolved, note = where.resolve(c, subjects)
        out.append(resolved)
        if note:
            notes.append(note)
    if query.sort is not None and runs and not any(query.sort in s.metrics for s in runs):
        import difflib

        known = sorted({m for s in runs for m in s.metrics})
        close = difflib.get_close_matches(query.sort, known, n=1)
        raise UsageError(
            f"--sort {query.sort!r}: no run records that metric",
            hint=f"did you mean {close[0]!r}?" if close else f"metrics: {', '.join(known) or 'none'}",
        )
    return Query(
        tuple(out), query.statuses, query.since, query.until, query.sort, query.ascending, query.limit
    ), notes


def select(query: Query, runs: Sequence[Summary]) -> list[Summary]:
    kept = []
    for s in runs:
        if query.statuses and s.status not in query.statuses:
            continue
        if query.since or query.until:
            t = started_at(s)
            if (query.since and t < query.since) or (query.until and t > query.until):
                continue
        if not query.conditions:
            kept.append(s)
            continue
        sub = subject(s)
        if all(where.matches(c, sub, query.sort) for c in query.conditions):
            kept.append(s)
    if query.sort is not None:
        key = query.sort
        scored = [s for s in kept if key in s.metrics]
        scored.sort(key=lambda s: s.metrics[key], reverse=not query.ascending)
        kept = scored + [s for s in kept if key not in s.metrics]
    return kept[: query.limit] if query.limit else kept
