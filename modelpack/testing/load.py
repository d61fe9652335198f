"""Load: N concurrent connections sending one request over and over for T seconds; throughput, latency
percentiles under load, error rate and the runtime's peak memory.

A small asyncio client on httpx (already the runner's HTTP library) rather than locust: locust brings
gevent, Flask and its own web UI and process model for distributed swarms, where one machine, one
endpoint and a fixed request are all a release test needs. Each connection is a task that sends its
next request when the last answered (a closed loop), so N is the concurrency the runtime sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelpack.record.evaluation import LoadPlan
from modelpack.testing.gates import percentile

MemoryProbe = Callable[[], float | None]  # the runtime's peak memory so far, in MB (None: not known)


@dataclass(frozen=True)
class LoadResult:
    connections: int
    duration_s: float  # as measured, first request sent to last answer
    requests: int  # answered or failed, every one sent
    errors: int  # non-200 answers and transport failures
    throughput_rps: float  # successful requests per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    peak_memory_mb: float | None
    first_error: str = ""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 1.0

    def metrics(self) -> dict[str, float]:
        out = {
            "requests": float(self.requests),
            "throughput_rps": self.throughput_rps,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "error_rate": self.error_rate,
        }
        if self.peak_memory_mb is not None:
            out["peak_memory_mb"] = self.peak_memory_mb
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "durationSeconds": self.duration_s,
            "errors": self.errors,
            "firstError": self.first_error,
            **self.metrics(),
            "requests": self.requests,
        }


def run_load(url: str, body: dict[str, Any], plan: LoadPlan, memory: MemoryProbe) -> LoadResult:
    return asyncio.run(_run(url, body, plan, memory))


async def _run(url: str, body: dict[str, Any], plan: LoadPlan, memory: MemoryProbe) -> LoadResult:
    import httpx

    samples: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=plan.connections, max_keepalive_connections=plan.connections)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        start = time.perf_counter()
        deadline = start + plan.duration_s

        async def connection() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = await http.post(url, json=body)
                    ok = response.status_code == 200
                    why = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as e:
                    ok, why = False, f"{type(e).__name__}: {e}"
                if ok:
                    samples.append((time.perf_counter() - sent) * 1000.0)
                else:
                    errors.append(why)

        await asyncio.gather(*(connection() for _ in range(plan.connections)))
        elapsed = time.perf_counter() - start
    peak = await asyncio.to_thread(memory)
    ok = samples or [0.0]
    return LoadResult(
        connections=plan.connections,
        duration_s=round(elapsed, 3),
        requests=len(samples) + len(errors),
        errors=len(errors),
        throughput_rps=len(samples) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(ok, 50),
        p95_ms=percentile(ok, 95),
        p99_ms=percentile(ok, 99),
        peak_memory_mb=peak,
        first_error=errors[0] if errors else "",
    )


def local_peak_mb(pid: int) -> float | None:
    """A local runtime's peak resident memory (VmHWM in /proc/PID/status), in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) * 1024 / 1e6, 2)
    except OSError:
        return None
    return None


def container_peak_mb(container: Any) -> float | None:
    """A container's peak memory: its cgroup's memory.peak (cgroup v2), else docker stats' max_usage (v1)."""
    try:
        code, out = container.exec_run(["cat", "/sys/fs/cgroup/memory.peak"])
        if code == 0 and out.strip().isdigit():
            return round(int(out.strip()) / 1e6, 2)
        stats = container.stats(stream=False)
        peak = (stats.get("memory_stats") or {}).get("max_usage")
        return round(int(peak) / 1e6, 2) if peak else None
    except Exception:  # the engine cannot say: memory is reported unknown, the load result stands
        return None


def parse_load(text: str) -> LoadPlan:
    """`--load 8x10s`: 8 connections for 10 seconds."""
    from modelpack.errors import UsageError
    from modelpack.packfile.evaluation import parse_duration

    connections, sep, duration = text.partition("x")
    try:
        if not sep or not connections.strip().isdigit():
            raise ValueError(f"{text!r} is not CONNECTIONSxDURATION")
        n = int(connections)
        if not 1 <= n <= 1024:
            raise ValueError(f"{n} connections: between 1 and 1024")
        return LoadPlan(n, parse_duration(duration))
    except ValueError as e:
        raise UsageError(f"--load {text}: {e}", hint="e.g. --load 8x10s (8 connections for 10 s)") from None
