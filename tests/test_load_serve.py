"""Bounded load on loopback: the serving runtime under 16 concurrent clients for 30 s from a second process,
and the registry client pushing 200 small blobs 8 at a time. Figures are printed (run with -s to see them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.registry_helpers import blob, client_for, opener
from support.serving import runtime

from modelpack.registry import RegistryRepository
from modelpack.registry.parallel import push_blobs

CLIENTS = 16
SECONDS = 30.0

# The load generator: its own process, so client and server do not share a GIL.
LOAD_CLIENT = r"""
import asyncio, json, sys, time
import httpx

url, clients, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
one = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
three = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                     "data": [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]}]}
expect = {1: [0], 3: [0, 1, 2]}

async def worker(client, stop, lat, errors):
    n = 0
    while time.monotonic() < stop:
        body = three if n % 2 else one
        n += 1
        t = time.perf_counter()
        try:
            r = await client.post("/v2/models/iris/infer", json=body)
            want = expect[body["inputs"][0]["shape"][0]]
            ok = r.status_code == 200 and r.json()["outputs"][0]["data"] == want
        except Exception as e:
            ok = False
            errors.append(repr(e)[:200])
        lat.append(time.perf_counter() - t)
        if not ok and len(errors) < 20:
            errors.append(f"{r.status_code} {r.text[:200]}")

async def main():
    lat, errors = [], []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client, started + seconds, lat, errors) for _ in range(clients)))
        elapsed = time.monotonic() - started
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    print(json.dumps({"requests": len(lat), "errors": errors, "seconds": elapsed,
                      "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": lat[-1] * 1000}))

asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")




@pytest.mark.slow
def test_runtime_under_16_clients_for_30s_has_no_error_and_steady_memory(tmp_path: Path) -> None:
    with runtime(tmp_path) as (url, proc):
        warm = subprocess.run(
            [sys.executable, "-c", LOAD_CLIENT, url, "4", "2"], capture_output=True, text=True, timeout=60
        )
        assert warm.returncode == 0, warm.stderr  # arenas and caches reach their working size first
        before = rss_kib(proc.pid)
        load = subprocess.run(
            [sys.executable, "-c", LOAD_CLIENT, url, str(CLIENTS), str(SECONDS)],
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
        )
        assert load.returncode == 0, load.stderr
        after = rss_kib(proc.pid)
        alive = httpx.get(f"{url}/v2/health/live", timeout=5)
    figures = json.loads(load.stdout)
    throughput = figures["requests"] / figures["seconds"]
    print(
        f"\nserve load: {CLIENTS} clients x {figures['seconds']:.0f} s, {figures['requests']} requests, "
        f"{throughput:.0f} req/s, p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"max {figures['max_ms']:.1f} ms, errors {len(figures['errors'])}; "
        f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB ({os.cpu_count()} CPUs)"
    )
    assert figures["errors"] == []
    assert figures["requests"] > CLIENTS * 10
    assert abs(after - before) <= 0.10 * before, (before, after)
    assert alive.status_code == 200


def test_200_small_blobs_pushed_8_at_a_time(registry, repo: str) -> None:  # type: ignore[no-untyped-def]
    payloads = [os.urandom(512 + i) for i in range(200)]
    blobs = [(blob(p), opener(p)) for p in payloads]
    with client_for(registry.host) as client:
        dest = RegistryRepository(client, repo)
        started = time.monotonic()
        first = push_blobs(dest, blobs, workers=8)
        elapsed = time.monotonic() - started
        again = push_blobs(dest, blobs, workers=8)
        assert all(dest.has_blob(d.digest) for d, _ in blobs)
    assert [r.how for r in first] == ["upload"] * 200
    assert [r.how for r in again] == ["skip"] * 200
    assert sum(r.bytes_sent for r in first) == sum(len(p) for p in payloads)
    print(f"\n200 blobs, 8 workers: {elapsed:.2f} s ({200 / elapsed:.0f} blobs/s)")
