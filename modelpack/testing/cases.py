"""Golden cases and latency against a running server, through an injected `infer` call.

`infer(request_body) -> (status, body)` is the only side effect, so the evaluation is tested with a plain
function and run for real against a container or a local process with httpx.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelpack.record.cases import Case
from modelpack.testing.gates import Latency, latency_of

Infer = Callable[[dict[str, Any]], tuple[int, Any]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "problems": list(self.problems)}


def run_case(case: Case, infer: Infer) -> CaseResult:
    try:
        status, body = infer(case.request())
    except Exception as e:  # a dropped connection is this case's failure, not the run's end
        return CaseResult(case.name, False, (f"request failed: {type(e).__name__}: {e}",))
    if status != 200:
        message = body.get("error") if isinstance(body, dict) else None
        return CaseResult(case.name, False, (f"HTTP {status}: {message or str(body)[:200]}",))
    problems = case.compare(body)
    return CaseResult(case.name, not problems, problems)


def run_cases(cases: Sequence[Case], infer: Infer) -> tuple[CaseResult, ...]:
    return tuple(run_case(c, infer) for c in cases)


def measure_latency(
    request: dict[str, Any], infer: Infer, n: int, clock: Clock = time.perf_counter
) -> Latency:
    """Times `n` sequential requests (after one untimed warm-up); any non-200 answer is an error."""
    if n < 1:
        raise ValueError("at least one latency request is needed")
    infer(request)
    samples: list[float] = []
    for _ in range(n):
        start = clock()
        status, body = infer(request)
        samples.append((clock() - start) * 1000.0)
        if status != 200:
            raise LatencyError(f"a latency request answered HTTP {status}: {str(body)[:200]}")
    return latency_of(samples)


class LatencyError(Exception):
    """The latency request itself failed; the orchestration turns it into failing latency gates."""
