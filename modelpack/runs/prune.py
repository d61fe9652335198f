"""`runs prune`: drop failed, killed and intermediate runs; keep what a team still needs.

Kept: runs still running; every run a release came from (the model repositories' records name it,
`record.run`); the best finished run of each dataset version (the set of dataset digests it read) by the
chosen metric; runs started within `--keep-recent`. Without a metric no finished run is dropped. The rule
(`plan`) is pure: summaries and facts in, decisions out. Dropping deletes the run's tag and its entry in
its listing shard; the registry's garbage collection frees the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index
from modelpack.oci.target import RawManifest, Target
from modelpack.runs.artifact import run_tag
from modelpack.runs.listing import id_of, shard_entries, shard_tag
from modelpack.runs.query import started_at
from modelpack.runs.record import FINISHED, RUNNING, Summary


@dataclass(frozen=True)
class RunDecision:
    id: str
    status: str
    keep: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "keep": self.keep, "reasons": list(self.reasons)}


def plan(
    runs: Sequence[Summary],
    *,
    metric: str | None,
    ascending: bool = False,
    released: Mapping[str, str] | None = None,  # run id -> the release that came from it
    keep_since: datetime | None = None,
) -> list[RunDecision]:
    released = released or {}
    best: dict[tuple[str, ...], Summary] = {}
    if metric is not None:
        for s in runs:
            if s.status != FINISHED or metric not in s.metrics:
                continue
            group = tuple(sorted(s.datasets))
            held = best.get(group)
            better = held is None or (
                s.metrics[metric] < held.metrics[metric]
                if ascending
                else s.metrics[metric] > held.metrics[metric]
            )
            if better:
                best[group] = s
    out = []
    for s in runs:
        keep: list[str] = []
        if s.status == RUNNING:
            keep.append("still running")
        if s.id in released:
            keep.append(f"release {released[s.id]} came from it")
        group = tuple(sorted(s.datasets))
        if metric is not None and best.get(group) is s:
            keep.append(f"best {metric} on {_datasets(group)}")
        if keep_since is not None and started_at(s) >= keep_since:
            keep.append("recent")
        if metric is None and s.status == FINISHED:
            keep.append("finished (no --metric to choose the best)")
        if keep:
            out.append(RunDecision(s.id, s.status, True, tuple(keep)))
            continue
        if s.status != FINISHED or metric is None:
            why = s.status
        elif metric not in s.metrics:
            why = f"no {metric}"
        else:
            winner = best.get(group)
            why = (
                f"{metric} {s.metrics[metric]:.4g} below {winner.id}'s"
                if winner
                else f"not the best {metric}"
            )
        out.append(RunDecision(s.id, s.status, False, (why,)))
    return out


def _datasets(group: tuple[str, ...]) -> str:
    return ", ".join(d.split(":", 1)[-1][:12] for d in group) or "no dataset"


def drop(target: Target, ids: Iterable[str]) -> list[str]:
    """Deletes each run's tag, then its shard entries; the ids dropped."""
    gone = list(ids)
    for run_id in gone:
        target.delete_tag(run_tag(run_id))
    for tag in sorted({shard_tag(i) for i in gone}):
        dropped = set(gone)
        entries = [d for d in shard_entries(target, tag) if id_of(d) not in dropped]
        raw = canonical.dumps(Index(manifests=tuple(entries), artifact_type=mt.RUN_LISTING).to_json())
        target.put_manifest(tag, RawManifest(raw, mt.OCI_INDEX, digests.of_bytes(raw)))
    return gone
