"""The served model's measured numbers of two releases, side by side: read from the annotations of each
one's newest test report with an evaluation (no report blob fetched), compared only when both were
measured on the same dataset version; otherwise the deltas would compare unlike things."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpack.evidence import evidence
from modelpack.oci.target import Target
from modelpack.record.evaluation import LOWER_IS_BETTER
from modelpack.release.diff import HIGHER, LOWER, MetricDelta

SOURCED = ("measured.", "fairness.", "load.")
_HIGHER_LOAD = {"load.throughput_rps", "load.requests"}


def better(name: str) -> str:
    """Which way is good: fairness gaps, latencies, errors and memory go down; scores and throughput up."""
    if name.startswith("fairness.") or (name.startswith("load.") and name not in _HIGHER_LOAD):
        return LOWER
    return LOWER if name.removeprefix("measured.") in LOWER_IS_BETTER else HIGHER


@dataclass(frozen=True)
class MeasuredSide:
    report: str | None  # the report's digest; None: no evaluation attached
    dataset: str | None  # the evaluation dataset's digest
    runtime: str | None
    metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"report": self.report, "dataset": self.dataset, "runtime": self.runtime,
                "metrics": dict(self.metrics)}  # fmt: skip


@dataclass(frozen=True)
class MeasuredDiff:
    old: MeasuredSide
    new: MeasuredSide
    metrics: tuple[MetricDelta, ...]  # empty unless comparable

    @property
    def comparable(self) -> bool:
        return self.old.dataset is not None and self.old.dataset == self.new.dataset

    @property
    def why_not(self) -> str:
        """Why the measured numbers are not compared ("" when they are)."""
        if self.old.report is None or self.new.report is None:
            missing = [s for s, side in (("A", self.old), ("B", self.new)) if side.report is None]
            return f"not comparable: no evaluation attached to {' and '.join(missing)}"
        if not self.comparable:
            return (
                f"not comparable: measured on different dataset versions "
                f"({(self.old.dataset or '-')[:19]} vs {(self.new.dataset or '-')[:19]})"
            )
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old.to_json(),
            "new": self.new.to_json(),
            "comparable": self.comparable,
            "whyNot": self.why_not,
            "metrics": [m.to_json() for m in self.metrics],
        }


def measured_side(target: Target, digest: str) -> MeasuredSide:
    report = evidence.newest_evaluation(target, digest)
    if report is None:
        return MeasuredSide(None, None, None, {})
    metrics = {k: v for k, v in evidence.measured(report).items() if k.startswith(SOURCED)}
    return MeasuredSide(
        report.digest, evidence.evaluation_dataset(report), evidence.runtime_of(report), metrics
    )


def diff_measured(old: MeasuredSide, new: MeasuredSide) -> MeasuredDiff:
    probe = MeasuredDiff(old, new, ())
    if not probe.comparable:
        return probe
    deltas = tuple(
        MetricDelta(
            name,
            old.metrics.get(name),
            new.metrics.get(name),
            old.dataset,
            new.dataset,
            better=better(name),
        )
        for name in sorted(set(old.metrics) | set(new.metrics))
    )
    return MeasuredDiff(old, new, deltas)
