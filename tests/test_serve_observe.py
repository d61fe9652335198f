"""Watching the runtime: /metrics scraped by a real Prometheus, one JSON log line per request with the
client's id, workers on one port summed in one scrape, and a SIGTERM that cuts no request and leaves no
process (the runtime as `python -m modelpack.serve`, and under `modelpack serve`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.clirun import script
from support.serving import base_env, free_port, iris_config

import modelpack
from modelpack.serve.metrics import PUBLISH_S
from modelpack.testing.container import wait_ready

REPO = Path(modelpack.__file__).resolve().parent.parent
ROW = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2]]}]}
INDEX = "sha256:" + "e" * 64
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@contextmanager
def runtime(
    tmp_path: Path, config: Path, *, workers: int = 1, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    environ = base_env(
        PORT=str(port),
        WORKERS=str(workers),
        MODELPACK_SERVING_CONFIG=str(config),
        PYTHONPATH=str(REPO),
        MODELPACK_INDEX_DIGEST=INDEX,
        **env,
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelpack.serve", "--host", "127.0.0.1"],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url, 60, alive=lambda: proc.poll() is None):
            pytest.fail(f"runtime not ready (exit {proc.poll()}):\n{log.read_text()}")
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def descendants(pid: int) -> set[int]:
    """Every live process under `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def left_alive(pids: set[int], within: float = 5.0) -> list[int]:
    """Those of `pids` still alive after `within` s (multiprocessing's resource tracker, a grandchild,
    exits a moment after the runtime, when its pipe closes)."""
    deadline = time.monotonic() + within
    while True:
        alive_now = [pid for pid in pids if alive(pid)]
        if not alive_now or time.monotonic() > deadline:
            return alive_now
        time.sleep(0.1)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client's own parser: (name, labels) -> value."""
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted({"model": "iris", "version": "1.0.0", **labels}.items())))
    return samples.get(key, 0.0)


def log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in log.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_metrics_logs_and_identity_match_what_was_sent(tmp_path: Path) -> None:
    config = iris_config(tmp_path)
    with runtime(tmp_path, config) as (url, proc, log), httpx.Client(timeout=10) as client:
        sent = [f"client-{i}" for i in range(7)]
        for request_id in sent:
            answer = client.post(
                f"{url}/v2/models/iris/infer", json=ROW, headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200 and answer.headers["x-request-id"] == request_id
            assert answer.json()["id"] == request_id  # the V2 answer's id is the request id
        traced = client.post(
            f"{url}/v2/models/iris/infer",
            json=ROW,
            headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"},
        )
        assert traced.headers["x-request-id"] == TRACE
        bad = [client.post(f"{url}/v2/models/iris/infer", content=b"{not json") for _ in range(2)]
        assert [b.status_code for b in bad] == [400, 400] and bad[0].headers["x-request-id"]
        assert client.get(f"{url}/v2/models/other/infer").status_code == 404
        meta = client.get(f"{url}/metadata").json()
        model = client.get(f"{url}/v2/models/iris").json()
        samples = scrape(url)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    # the counters are the requests sent: 8 good inferences, 2 bad, one unknown model, 2 metadata reads
    assert sample(samples, "modelpack_requests_total", endpoint="infer", status="200") == 8
    assert sample(samples, "modelpack_requests_total", endpoint="infer", status="400") == 2
    assert sample(samples, "modelpack_requests_total", endpoint="other", status="404") == 1
    assert sample(samples, "modelpack_requests_total", endpoint="metadata", status="200") == 1
    assert sample(samples, "modelpack_requests_total", endpoint="model_metadata", status="200") == 1
    assert sample(samples, "modelpack_request_duration_seconds_count", endpoint="infer") == 10
    assert sample(samples, "modelpack_request_duration_seconds_bucket", endpoint="infer", le="+Inf") == 10
    assert sample(samples, "modelpack_request_size_bytes_count", endpoint="infer") == 10
    assert sample(samples, "modelpack_errors_total", kind="invalid_request") == 2
    assert sample(samples, "modelpack_errors_total", kind="not_found") == 1
    assert sample(samples, "modelpack_requests_in_flight") == 1  # the scrape itself
    assert sample(samples, "modelpack_model_load_seconds") > 0
    release = {"bundle_digest": "sha256:" + "d" * 64, "index_digest": INDEX}
    assert sample(samples, "modelpack_release_info", **release) == 1
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)
    # identity: /metadata, the V2 model metadata, the startup line
    assert (meta["version"], meta["bundle_digest"], meta["index_digest"]) == (
        "1.0.0",
        release["bundle_digest"],
        INDEX,
    )
    assert model["parameters"] == {"release_version": "1.0.0", **release}
    lines = log_lines(log)
    starting = [line for line in lines if line.get("event") == "starting"]
    assert len(starting) == 1 and starting[0]["index_digest"] == INDEX and starting[0]["version"] == "1.0.0"
    # one line per request (the scrape included; the readiness polls before the test's are left out),
    # with the client's id, and never a body
    requests = [line for line in lines if "request_id" in line and line["path"] != "/v2/health/ready"]
    assert [line["request_id"] for line in requests[:7]] == sent
    assert requests[7]["request_id"] == TRACE
    assert len(requests) == 14 and len({line["request_id"] for line in requests}) == 14
    assert {line["status"] for line in requests} == {200, 400, 404}
    assert all(
        line["model"] == "iris" and line["version"] == "1.0.0" and line["duration_ms"] > 0
        for line in requests
    )
    assert [line["level"] for line in requests if line["status"] == 400] == ["warning", "warning"]
    assert "5.1" not in log.read_text() and "not json" not in log.read_text()


def test_request_log_level_and_off(tmp_path: Path) -> None:
    config = json.loads(iris_config(tmp_path).read_text())
    quiet = tmp_path / "quiet.json"
    quiet.write_text(json.dumps({**config, "request_log_level": "warning"}))
    with runtime(tmp_path, quiet) as (url, proc, log):
        httpx.post(f"{url}/v2/models/iris/infer", json=ROW)
        httpx.post(f"{url}/v2/models/iris/infer", content=b"[]", headers={"x-request-id": "the-bad-one"})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert [line["request_id"] for line in log_lines(log) if "request_id" in line] == ["the-bad-one"]
    off = tmp_path / "off.json"
    off.write_text(json.dumps({**config, "request_log": False, "metrics": False}))
    with runtime(tmp_path, off) as (url, proc, log):
        httpx.post(f"{url}/v2/models/iris/infer", json=ROW)
        assert httpx.get(f"{url}/metrics").status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert not [line for line in log_lines(log) if "request_id" in line]


def test_prometheus_scrapes_the_runtime(tmp_path: Path) -> None:
    """Debian's Prometheus server scrapes /metrics on loopback and reads back the counts sent."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not installed: run scripts/test-env install"
    with runtime(tmp_path, iris_config(tmp_path)) as (url, _proc, _log):
        for _ in range(5):
            assert httpx.post(f"{url}/v2/models/iris/infer", json=ROW).status_code == 200
        target = url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(
            textwrap.dedent(f"""\
                global: {{scrape_interval: 1s, scrape_timeout: 1s}}
                scrape_configs:
                  - job_name: modelpack
                    static_configs: [{{targets: ["{target}"]}}]
            """)
        )
        port = free_port()
        with (tmp_path / "prometheus.log").open("wb") as out:
            server = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            query = 'modelpack_requests_total{endpoint="infer",status="200",model="iris",version="1.0.0"}'
            deadline = time.monotonic() + 30
            result: list[Any] = []
            while time.monotonic() < deadline and not result:
                time.sleep(0.5)
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query})
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    result = answer.json()["data"]["result"]
            assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert float(result[0]["value"][1]) == 5
            info = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": "modelpack_release_info"}
            ).json()["data"]["result"]
            assert info[0]["metric"]["index_digest"] == INDEX
        finally:
            server.terminate()
            server.wait(30)


def test_two_workers_answer_on_one_port_and_one_scrape_sums_them(tmp_path: Path) -> None:
    with runtime(tmp_path, iris_config(tmp_path), workers=2) as (url, proc, _log):
        pids: set[int] = set()
        sent = 0
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            # a new connection each time: the kernel hands each to whichever worker accepts first
            with httpx.Client() as client:
                pids.add(client.get(f"{url}/metadata").json()["runtime"]["pid"])
                assert client.post(f"{url}/v2/models/iris/infer", json=ROW).status_code == 200
                sent += 1
        assert len(pids) == 2 and pids <= descendants(proc.pid)
        time.sleep(PUBLISH_S + 0.3)  # each worker shares its counts at most PUBLISH_S after a request
        for _ in range(4):  # whichever worker answers the scrape, it counts both
            samples = scrape(url)
            assert sample(samples, "modelpack_requests_total", endpoint="infer", status="200") == sent
            assert sample(samples, "modelpack_workers") == 2
            assert {labels for name, labels in samples if name == "process_resident_memory_bytes"} == {
                (("pid", str(pid)),) for pid in pids
            }
        workers = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not left_alive(workers)


SLOW_HANDLER = """
import time
import numpy as np

class Slow:
    def load(self, model_dir):
        pass

    def predict(self, inputs):
        time.sleep(float(inputs["seconds"][0]))
        return {"slept": np.asarray(inputs["seconds"], dtype=np.float32)}
"""


def slow_request(seconds: float) -> dict[str, Any]:
    return {"inputs": [{"name": "seconds", "shape": [1], "datatype": "FP32", "data": [seconds]}]}


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_in_flight_requests_and_exits_zero(tmp_path: Path, workers: int) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "slow.py").write_text(SLOW_HANDLER)
    config = tmp_path / "slow.json"
    config.write_text(
        json.dumps(
            {
                "name": "slow",
                "handler": "slow:Slow",
                "code_dir": str(tmp_path / "code"),
                "inference": "thread",
            }
        )
    )
    with runtime(tmp_path, config, workers=workers) as (url, proc, log):
        processes = descendants(proc.pid) | {proc.pid}
        answers: list[int] = []

        def infer() -> None:
            answer = httpx.post(f"{url}/v2/models/slow/infer", json=slow_request(1.0), timeout=30)
            answers.append(answer.status_code)

        clients = [threading.Thread(target=infer) for _ in range(3)]
        for client in clients:
            client.start()
        time.sleep(0.5)  # all three are in flight (one thread predicts per worker: the others queue)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = None
        with contextlib.suppress(httpx.TransportError):  # refused or 503 from now on, never 200
            ready = httpx.get(f"{url}/v2/health/ready", timeout=2).status_code
        assert ready in (None, 503)
        for client in clients:
            client.join(30)
        assert proc.wait(30) == 0, log.read_text()
    assert answers == [200, 200, 200]  # none cut
    assert not left_alive(processes)


def test_sigterm_to_modelpack_serve_leaves_no_runtime(tmp_path: Path) -> None:
    """The foreground `modelpack serve` (issue 21 item 14): SIGTERM to it alone, as a supervisor sends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MODELPACK_SERVING_CONFIG")}
    proc = subprocess.Popen(
        [str(script()), "serve", str(REPO / "examples" / "iris-onnx"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**env, "WORKERS": "2"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_ready(url, 60, alive=lambda: proc.poll() is None)
        runtime_processes = descendants(proc.pid)
        assert len(runtime_processes) >= 3  # the runtime, its two workers (and their helpers)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not left_alive(runtime_processes)


def test_sigkill_to_modelpack_serve_leaves_no_runtime(tmp_path: Path) -> None:
    """Even a parent that cannot clean up (SIGKILL): the runtime dies with it (PR_SET_PDEATHSIG)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MODELPACK_SERVING_CONFIG")}
    proc = subprocess.Popen(
        [str(script()), "serve", str(REPO / "examples" / "iris-onnx"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, "WORKERS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    assert wait_ready(url, 60, alive=lambda: proc.poll() is None)
    runtime_processes = descendants(proc.pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while [pid for pid in runtime_processes if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in runtime_processes if alive(pid)]


def test_dropped_connections_are_counted(tmp_path: Path) -> None:
    with runtime(tmp_path, iris_config(tmp_path), MODELPACK_SERVE_BODY_TIMEOUT_S="1") as (url, _proc, _log):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as half:
            half.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            half.settimeout(5)
            assert half.recv(1) == b""  # dropped by the server after body_timeout_s
        assert sample(scrape(url), "modelpack_errors_total", kind="connection_dropped") == 1
