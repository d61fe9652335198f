"""Gates: `accuracy >= 0.9`, `latency_p95_ms <= 50`, parsed into frozen `Gate(metric, op, threshold)`.

A bare name means what it always meant (a recorded metric, or one of MEASURED); a prefixed name says where
the number comes from: `recorded.f1_macro`, `measured.f1_macro` (the served model on the evaluation
dataset), `gap.f1_macro`, `fairness.equalized_odds_difference`, `load.p99_ms`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from modelpack.errors import InputError
from modelpack.packfile.nodes import did_you_mean
from modelpack.packfile.schema import GATE_OPS, Gate
from modelpack.record.evaluation import gate_names

# The metrics `modelpack test` measures itself, on top of the record's: a gate may name them although the
# packfile does not (the runner reads this list, so a gate the build accepts is one the run can evaluate).
MEASURED = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "image_size_mb")

_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*(>=|<=|==|>|<)\s*(\S+)\s*$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_LOOKALIKES = {"=>": ">=", "=<": "<=", "=": "==", "≥": ">=", "≤": "<="}


def parse_gate(text: str) -> Gate:
    """Parse one gate; the InputError says what shape was expected (the caller prefixes file and line)."""
    match = _GATE.match(text)
    if not match:
        for wrong, right in _LOOKALIKES.items():
            if wrong in text and right not in text:
                raise InputError(f"{text!r} is not a gate", hint=f"write {right!r} instead of {wrong!r}")
        raise InputError(
            f"{text!r} is not a gate",
            hint=f"write 'METRIC OP NUMBER', e.g. 'accuracy >= 0.9', with OP one of {' '.join(GATE_OPS)}",
        )
    metric, op, threshold = match.groups()
    if not _NUMBER.match(threshold):
        raise InputError(f"{text!r}: threshold {threshold!r} is not a number")
    return Gate(metric=metric, op=op, threshold=float(threshold))


def check_gate_metrics(gates: Sequence[Gate], metrics: Iterable[str], *, where: str) -> None:
    """Refuse a gate naming a metric neither the packfile's metrics nor a test run will have: at test time
    it could only fail, after the release was built and pushed."""
    recorded = list(metrics)
    known = sorted({*recorded, *MEASURED, *gate_names(recorded)})
    for i, gate in enumerate(gates):
        if gate.metric in known:
            continue
        guess = did_you_mean(gate.metric, known)
        raise InputError(
            f"{where}: tests.gates[{i}]: {str(gate)!r} names an unknown metric {gate.metric!r}",
            hint=f"{guess + ' ' if guess else ''}known metrics: {', '.join(known)}",
        )
