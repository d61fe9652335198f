"""Automatic canary analysis: is the canary within the stated bounds of the stable release?

Read from the runtime's Prometheus metrics (modelpack/serve's `/metrics`): the counter
`modelpack_requests_total{model,version,endpoint,status}` and the histogram
`modelpack_request_duration_seconds{model,version,endpoint}`. Each side is judged on what happened in
the analysis window, the difference of two scrapes of its own container (counters only grow; a restarted
container's smaller counts are taken as a fresh start). Pure: scrape texts in, a verdict with the numbers
out; the deployer scrapes and acts.

The rule (bounds in spec.Bounds): nothing is decided before both sides answered `min_requests` in the
window; the canary fails when its error rate (answers with a 5xx status, of the infer endpoint) exceeds
stable's by more than `max_error_rate_increase`, or its p99 latency exceeds stable's x `max_p99_ratio` +
`p99_slack_s`. p99 is read from the histogram's buckets (linear within the bucket that holds it, as
Prometheus' histogram_quantile does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelpack.deploy.spec import Bounds

REQUESTS = "modelpack_requests"  # the parser drops a counter's _total suffix from the family name
DURATION = "modelpack_request_duration_seconds"
MAX_SCRAPE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Sample:
    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending, +Inf last

    def minus(self, before: Sample) -> Sample:
        """What happened between `before` and this scrape (a restart: this scrape alone)."""
        if self.requests < before.requests:
            return self
        earlier = dict(before.buckets)
        buckets = tuple((le, max(0.0, n - earlier.get(le, 0.0))) for le, n in self.buckets)
        return Sample(self.requests - before.requests, max(0.0, self.errors - before.errors), buckets)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        return quantile(self.buckets, q)


EMPTY = Sample(0.0, 0.0, ())


def parse(text: str, endpoint: str = "infer") -> Sample:
    """One scrape of one release container -> its totals for the endpoints whose label contains
    `endpoint` (every model, every version): health probes and /metrics itself are not traffic."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text[:MAX_SCRAPE_BYTES]):
        if family.name == REQUESTS:
            for s in family.samples:
                if s.name.endswith("_total") and endpoint in s.labels.get("endpoint", endpoint):
                    requests += s.value
                    if str(s.labels.get("status", "")).startswith("5"):
                        errors += s.value
        elif family.name == DURATION:
            for s in family.samples:
                if s.name.endswith("_bucket") and endpoint in s.labels.get("endpoint", endpoint):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
    return Sample(requests, errors, tuple(sorted(buckets.items())))


def quantile(buckets: tuple[tuple[float, float], ...], q: float) -> float | None:
    """The q-quantile of a cumulative histogram; None without observations. Beyond the last finite bucket
    it is that bucket's bound (as Prometheus answers)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            span = count - lower_count
            return lower_bound + (le - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = le, count
    return lower_bound


@dataclass(frozen=True)
class Verdict:
    decided: bool  # enough requests on both sides to judge
    ok: bool  # within bounds (meaningful when decided)
    detail: str  # the numbers, as history records them
    canary_error_rate: float
    stable_error_rate: float
    canary_p99: float | None
    stable_p99: float | None
    canary_requests: float
    stable_requests: float


def judge(stable: Sample, canary: Sample, bounds: Bounds) -> Verdict:
    """Compare the canary's window with the stable's."""
    c_rate, s_rate = canary.error_rate, stable.error_rate
    c_p99, s_p99 = canary.quantile(0.99), stable.quantile(0.99)
    numbers = (
        f"canary error rate {c_rate:.2%} over {canary.requests:.0f} requests vs stable {s_rate:.2%} over "
        f"{stable.requests:.0f}; p99 {_ms(c_p99)} vs {_ms(s_p99)}"
    )

    def verdict(decided: bool, ok: bool, why: str) -> Verdict:
        return Verdict(
            decided, ok, f"{why}: {numbers}", c_rate, s_rate, c_p99, s_p99, canary.requests, stable.requests
        )

    if canary.requests < bounds.min_requests or stable.requests < bounds.min_requests:
        return verdict(False, True, f"waiting for {bounds.min_requests} requests on each side")
    if c_rate > s_rate + bounds.max_error_rate_increase:
        allowed = s_rate + bounds.max_error_rate_increase
        return verdict(True, False, f"error rate over the bound ({c_rate:.2%} > {allowed:.2%})")
    if c_p99 is not None and s_p99 is not None:
        limit = s_p99 * bounds.max_p99_ratio + bounds.p99_slack_s
        if c_p99 > limit:
            return verdict(True, False, f"p99 latency over the bound ({_ms(c_p99)} > {_ms(limit)})")
    return verdict(True, True, "within bounds")


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"
