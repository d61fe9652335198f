"""Gates evaluated against what a test run knows: the record's metrics plus the measured ones.

Pure: no I/O. A gate whose metric the run does not know fails (a typo in a gate must not pass silently).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelpack.errors import InputError
from modelpack.packfile.gates import MEASURED, parse_gate

SOURCES = ("measured", "gap", "fairness", "load")  # prefixes of what a run measures (not the record)


@dataclass(frozen=True)
class GateResult:
    gate: str  # as written, e.g. "accuracy >= 0.9"
    value: float | None  # the metric's value, None when unknown
    passed: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"gate": self.gate, "value": self.value, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Latency:
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def metrics(self) -> dict[str, float]:
        return {"latency_p50_ms": self.p50_ms, "latency_p95_ms": self.p95_ms, "latency_p99_ms": self.p99_ms}

    def to_json(self) -> dict[str, float | int]:
        return {"requests": self.requests, **self.metrics()}


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the value a request actually took, never an interpolation)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_of(samples_ms: Sequence[float]) -> Latency:
    return Latency(
        requests=len(samples_ms),
        p50_ms=percentile(samples_ms, 50),
        p95_ms=percentile(samples_ms, 95),
        p99_ms=percentile(samples_ms, 99),
    )


def evaluate_gates(gates: Sequence[str], metrics: Mapping[str, float]) -> tuple[GateResult, ...]:
    """Every gate against `metrics`; a malformed gate or an unknown metric is a failing gate, not a crash."""
    results: list[GateResult] = []
    for text in gates:
        try:
            gate = parse_gate(text)
        except InputError as e:
            results.append(GateResult(text, None, False, f"not a gate: {e}"))
            continue
        value = metrics.get(gate.metric)
        if value is None:
            known = ", ".join(sorted(metrics)) or "none"
            why = (
                "was not measured in this run"
                if gate.metric in MEASURED or gate.metric.split(".", 1)[0] in SOURCES
                else "is not a metric of this release"
            )
            results.append(GateResult(text, None, False, f"{gate.metric} {why} (known: {known})"))
            continue
        ok = gate.passes(value)
        rel = "meets" if ok else "fails"
        results.append(
            GateResult(text, value, ok, f"{gate.metric} = {value:g} {rel} {gate.op} {gate.threshold:g}")
        )
    return tuple(results)
