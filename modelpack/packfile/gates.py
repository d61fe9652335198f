"""Gates: `accuracy >= 0.9`, `latency_p95_ms <= 50`, parsed into frozen `Gate(metric, op, threshold)`."""

from __future__ import annotations

import re

from modelpack.errors import InputError
from modelpack.packfile.schema import GATE_OPS, Gate

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
