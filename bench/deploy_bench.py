"""The Docker target's figures (issue 23 item 9): how soon production follows a rollback, failed requests
across switches, and the canary's share.

Run by hand (not a test):

    eval "$(scripts/test-env up)"     # the engine, the base image and the HAProxy image
    .venv/bin/python bench/deploy_bench.py [--switches 10] [--connections 16] [--canary-requests 1000]
    .venv/bin/python bench/deploy_bench.py --quick      # 3 switches, 4 connections, 200 canary requests

It starts its own `docker-registry` on a free 127.0.0.1 port, pushes the engine's base image there, builds
two releases of the custom-handler example (1.0.0 and 2.0.0, served image each), pushes them, promotes
1.0.0 to `prod` and deploys it behind the proxy (HAProxy from MODELPACK_TEST_PROXY_IMAGE). Then, with a
client on --connections connections sending requests through the proxy all along and noting which release
answered each one:
  - rollback, direct: `rollback()` returns, then one `deploy()`; the figure is the time from rollback's
    return to the last answer by the release rolled away from (from then on 100% come from the old one).
    Limit 1 s. The same through the console scripts (`modelpack rollback` then `modelpack deploy`):
    reported with the CLI's start-up included, no limit.
  - rollback, --watch: a `modelpack deploy --watch --interval 2s` process follows the registry; the figure
    is the same time, limit interval + 1 s (3 s).
  - failed requests during --switches blue-green switches and as many rollbacks (goal 0).
  - the canary's share: `promote --canary 10`, --canary-requests sequential requests, percent answered by
    the canary; the figure is its distance from 10, in points (limit 3).
Deploy-to-ready for a 3 GB model (the anchor, KServe's modelcar at 10 s): bench/deploy_big_bench.py.
Peak RSS of this process is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchkit  # bench/, beside this script
import httpx
from rollback_bench import Registry, free_port

from modelpack import api
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

ROOT = Path(__file__).resolve().parents[1]
MODELPACK = Path(sys.executable).parent / "modelpack"
BODY = {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [3, 80, 10]}]}
INTERVAL = 2.0


class Client:
    """--connections threads posting through the proxy; every answer noted as (finished at, version)."""

    def __init__(self, url: str, connections: int) -> None:
        self.url, self.n = url, connections
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(connections)]

    def __enter__(self) -> Client:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    r = http.post(self.url, json=BODY)
                    ok = r.status_code == 200
                    what = str(r.json().get("model_version")) if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    ok, what = False, type(e).__name__
                with self.lock:
                    (self.answers.append((time.monotonic(), what)) if ok else self.failures.append(what))

    def last_from(self, version: str, after: float) -> float:
        """When the last answer by `version` finished (after `after`), or `after` when none did."""
        with self.lock:
            return max((t for t, v in self.answers if v == version and t > after), default=after)

    def settled(self, version: str, since: float, n: int = 50) -> bool:
        """Whether the last `n` answers finished after `since` all came from `version`."""
        with self.lock:
            recent = [v for t, v in self.answers if t > since][-n:]
        return len(recent) >= n and set(recent) == {version}


def wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the proxy to settle")
        time.sleep(0.02)


def project(tmp: Path, version: str) -> Path:
    dest = tmp / version
    shutil.copytree(ROOT / "examples" / "custom-handler", dest)
    packfile = dest / "modelpack.yaml"
    packfile.write_text(packfile.read_text().replace("version: 0.1.0", f"version: {version}", 1))
    return dest


def push_base(registry: str) -> str:
    import docker

    client = docker.from_env(version="auto")
    image = client.images.get(
        os.environ.get("MODELPACK_TEST_BASE_IMAGE", "modelpack-test/python:3.11-bookworm")
    )
    target = f"{registry}/base/python"
    image.tag(target, tag="3.11")
    for line in client.images.push(target, tag="3.11", stream=True, decode=True):
        if "error" in line:
            raise SystemExit(f"pushing the base image failed: {line['error']}")
    return f"{target}:3.11"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switches", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--canary-requests", type=int, default=1000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.switches, args.connections, args.canary_requests = 3, 4, 200
    proxy = os.environ.get("MODELPACK_TEST_PROXY_IMAGE", "modelpack-test/haproxy:2.6-bookworm")
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp_text:
        tmp = Path(tmp_text)
        (tmp / "reg").mkdir()
        registry = Registry(tmp / "reg")
        try:
            run(tmp, registry.host, proxy, args)
        finally:
            registry.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")


def run(tmp: Path, host: str, proxy: str, args: argparse.Namespace) -> None:
    base = push_base(host)
    store = LayoutStore(tmp / "store")
    repo = f"{host}/bench/deploy"
    for version in ("1.0.0", "2.0.0"):
        with Targets(store_path=store.root) as targets:
            built = api.build(
                targets, project(tmp, version), image=True, base=base, environ={"SOURCE_DATE_EPOCH": "0"}
            )
            api.push(targets, f"{repo}:{version}", source=built.tag)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/house-prices/infer"
    store_args = ["--store", str(store.root)]
    with Targets(store_path=store.root) as t:
        api.env_set(t, repo, "prod", port=port, proxy_image=proxy, drain_s=1.0, keep_warm_s=600.0)
        api.promote(t, f"{repo}:1.0.0", "prod", force=True, reason="bench")
        api.deploy(t, repo, "prod")
        try:
            with Client(url, args.connections) as client:
                direct, cli = [], []
                for i in range(args.switches):
                    api.promote(t, f"{repo}:2.0.0", "prod", force=True, reason="bench")
                    api.deploy(t, repo, "prod")
                    wait(lambda: client.settled("2.0.0", time.monotonic() - 0.001, 1))
                    api.rollback(t, repo, "prod")
                    returned = time.monotonic()
                    api.deploy(t, repo, "prod")
                    wait(lambda r=returned: client.settled("1.0.0", r))
                    direct.append(client.last_from("2.0.0", returned) - returned)
                    if i < 3:  # the console scripts: CLI start-up included
                        cmd = [str(MODELPACK), "promote", f"{repo}:2.0.0", "prod", "--force", "--reason", "b"]
                        subprocess.run([*cmd, *store_args], check=True, capture_output=True)
                        subprocess.run(
                            [str(MODELPACK), "deploy", repo, "prod", *store_args],
                            check=True,
                            capture_output=True,
                        )
                        wait(lambda: client.settled("2.0.0", time.monotonic() - 0.001, 1))
                        subprocess.run(
                            [str(MODELPACK), "rollback", repo, "prod", *store_args],
                            check=True,
                            capture_output=True,
                        )
                        returned = time.monotonic()
                        subprocess.run(
                            [str(MODELPACK), "deploy", repo, "prod", *store_args],
                            check=True,
                            capture_output=True,
                        )
                        wait(lambda r=returned: client.settled("1.0.0", r))
                        cli.append(client.last_from("2.0.0", returned) - returned)
                failed_switches = list(client.failures)
                total = len(client.answers) + len(client.failures)
            benchkit.emit(
                "rollback -> 100% old release, direct (rollback(), deploy())", statistics.median(direct), 1.0
            )
            benchkit.emit(
                "rollback -> 100% old release, console scripts (modelpack rollback; modelpack deploy)",
                statistics.median(cli),
            )
            benchkit.emit(
                f"failed requests, {args.switches} switches + {args.switches} rollbacks, "
                f"{args.connections} conns ({total} requests)",
                float(len(failed_switches)),
                unit="requests",
            )
            watched = watch_rollbacks(t, repo, url, store_args, args)
            benchkit.emit(
                f"rollback -> 100% old release, deploy --watch --interval {INTERVAL:g}s",
                statistics.median(watched),
                INTERVAL + 1.0,
            )
            share = canary_share(t, repo, url, args.canary_requests)
            benchkit.emit(
                f"canary share, --canary 10, {args.canary_requests} requests (points from 10)",
                abs(share - 10.0),
                3.0,
                unit="points",
            )
            print(f"direct: {_r(direct)}; cli: {_r(cli)}; watch: {_r(watched)}; canary share {share:.1f}%")
            if failed_switches:
                print(f"failures: {failed_switches[:10]}")
        finally:
            api.undeploy(t, repo, "prod")


def _r(values: list[float]) -> list[float]:
    return [round(x, 3) for x in values]


def watch_rollbacks(
    t: Targets, repo: str, url: str, store_args: list[str], args: argparse.Namespace
) -> list[float]:
    watcher = subprocess.Popen(
        [str(MODELPACK), "deploy", repo, "prod", "--watch", "--interval", f"{INTERVAL:g}s", *store_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    times = []
    try:
        with Client(url, args.connections) as client:
            for _ in range(min(args.switches, 5)):
                api.promote(t, f"{repo}:2.0.0", "prod", force=True, reason="bench")
                wait(lambda: client.settled("2.0.0", time.monotonic() - 0.001, 1))
                time.sleep(0.5)
                api.rollback(t, repo, "prod")
                returned = time.monotonic()
                wait(lambda r=returned: client.settled("1.0.0", r))
                times.append(client.last_from("2.0.0", returned) - returned)
            if client.failures:
                print(f"failures under --watch: {len(client.failures)}: {client.failures[:5]}")
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(30)
    return times


def canary_share(t: Targets, repo: str, url: str, n: int) -> float:
    api.promote(t, f"{repo}:2.0.0", "prod", force=True, reason="bench", canary=10)
    api.deploy(t, repo, "prod")
    seen = 0
    with httpx.Client(timeout=10) as http:
        for _ in range(n):
            if http.post(url, json=BODY).json().get("model_version") == "2.0.0":
                seen += 1
    api.rollback(t, repo, "prod")  # aborts the canary
    api.deploy(t, repo, "prod")
    return 100.0 * seen / n


if __name__ == "__main__":
    main()
