"""Automatic canary analysis as a rule: two scrapes of each side in the runtime's Prometheus text format
(the metric names modelpack/serve exposes), parsed by prometheus_client, judged against the bounds."""

from __future__ import annotations

import pytest

from modelpack.deploy.analysis import EMPTY, Sample, judge, parse, quantile
from modelpack.deploy.spec import Bounds

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def scrape(ok: int, errors: int, latencies: list[float], version: str = "1.0.0", health: int = 0) -> str:
    """A /metrics page as the runtime writes it: requests by endpoint and status, a duration histogram."""
    m = f'model="hp",version="{version}"'
    lines = [
        "# HELP modelpack_requests_total HTTP requests answered.",
        "# TYPE modelpack_requests_total counter",
        f'modelpack_requests_total{{{m},endpoint="infer",status="200"}} {ok}',
        f'modelpack_requests_total{{{m},endpoint="infer",status="500"}} {errors}',
        f'modelpack_requests_total{{{m},endpoint="server_ready",status="200"}} {health}',
        "# HELP modelpack_request_duration_seconds Time to answer.",
        "# TYPE modelpack_request_duration_seconds histogram",
    ]
    for le in (*BUCKETS, float("inf")):
        n = sum(1 for x in latencies if x <= le)
        label = "+Inf" if le == float("inf") else repr(le)
        lines.append(f'modelpack_request_duration_seconds_bucket{{{m},endpoint="infer",le="{label}"}} {n}')
    lines.append(f'modelpack_request_duration_seconds_count{{{m},endpoint="infer"}} {len(latencies)}')
    lines.append(f'modelpack_request_duration_seconds_sum{{{m},endpoint="infer"}} {sum(latencies)}')
    lines.append("# TYPE modelpack_requests_in_flight gauge")
    lines.append(f"modelpack_requests_in_flight{{{m}}} 1")
    return "\n".join(lines) + "\n"


def test_parse_counts_infer_requests_only_and_5xx_as_errors() -> None:
    s = parse(scrape(90, 10, [0.004] * 100, health=500))
    assert s.requests == 100 and s.errors == 10 and s.error_rate == pytest.approx(0.1)
    assert s.buckets[0] == (0.005, 100.0) and s.buckets[-1][1] == 100.0


def test_the_window_is_the_difference_of_two_scrapes() -> None:
    before = parse(scrape(100, 0, [0.004] * 100))
    after = parse(scrape(150, 50, [0.004] * 100 + [0.2] * 100))
    w = after.minus(before)
    assert w.requests == 100 and w.errors == 50
    assert w.quantile(0.99) == pytest.approx(0.1 + (0.25 - 0.1) * 0.99)  # every new answer in (0.1, 0.25]
    restarted = parse(scrape(5, 0, [0.004] * 5))
    assert restarted.minus(before).requests == 5  # a restarted container starts its own window


def test_quantile_interpolates_within_the_bucket() -> None:
    assert quantile(((0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)), 0.5) == pytest.approx(0.1)
    assert quantile(((0.1, 0.0), (0.2, 100.0), (float("inf"), 100.0)), 0.5) == pytest.approx(0.15)
    assert quantile(((0.1, 0.0), (float("inf"), 10.0)), 0.99) == pytest.approx(0.1)  # beyond: the last bound
    assert quantile((), 0.99) is None and EMPTY.quantile(0.99) is None


def _window(ok: int, errors: int, latency: float) -> Sample:
    return parse(scrape(ok, errors, [latency] * (ok + errors))).minus(EMPTY)


def test_a_canary_with_more_errors_breaches_and_says_the_numbers() -> None:
    v = judge(_window(200, 0, 0.004), _window(25, 25, 0.004), Bounds())
    assert v.decided and not v.ok
    assert "error rate over the bound (50.00% > 1.00%)" in v.detail
    assert "canary error rate 50.00% over 50 requests vs stable 0.00% over 200" in v.detail


def test_a_slower_canary_breaches_on_p99() -> None:
    v = judge(_window(200, 0, 0.004), _window(100, 0, 0.4), Bounds())
    assert v.decided and not v.ok and "p99 latency over the bound" in v.detail
    # the slack keeps a few milliseconds of noise on a fast stable from failing the canary
    assert judge(_window(200, 0, 0.004), _window(100, 0, 0.009), Bounds()).ok


def test_within_bounds_and_too_few_requests() -> None:
    v = judge(_window(200, 2, 0.004), _window(100, 1, 0.004), Bounds())
    assert v.decided and v.ok and v.detail.startswith("within bounds")
    early = judge(_window(200, 0, 0.004), _window(5, 5, 0.004), Bounds())
    assert not early.decided and "waiting for 20 requests" in early.detail
    strict = Bounds(max_error_rate_increase=0.0, min_requests=1)
    assert not judge(_window(100, 0, 0.004), _window(99, 1, 0.004), strict).ok
