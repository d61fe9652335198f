"""`python -m modelpack.serve` as a real process on 127.0.0.1, and in a clean venv with only its lockfile."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from support.serving import base_env, free_port, iris_config

import modelpack
from modelpack.testing.container import wait_ready

REPO = Path(modelpack.__file__).resolve().parent.parent
LOCK = REPO / "modelpack" / "serve" / "requirements.lock"
ONNX_LOCK = REPO / "modelpack" / "serve" / "requirements-onnx.lock"  # what the "onnx" handler adds
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]




@contextmanager
def serving(python: str, env: Mapping[str, str], log: Path, timeout: float = 60) -> Iterator[str]:
    """Start the runtime, wait until /v2/health/ready answers 200, yield its URL, stop it by its pid."""
    port = int(env["PORT"])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python, "-m", "modelpack.serve", "--host", "127.0.0.1"],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url, timeout, alive=lambda: proc.poll() is None):
            pytest.fail(f"server not ready (exit code {proc.poll()}) after {timeout}s:\n{log.read_text()}")
        yield url
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught, as a shell expects.
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()




def assert_iris_golden(url: str) -> None:
    request = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": IRIS_ROWS}]}
    response = httpx.post(f"{url}/v2/models/iris/infer", json=request, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0] == {
        "name": "label",
        "datatype": "INT64",
        "shape": [3],
        "data": [0, 1, 2],
    }
    bad = httpx.post(f"{url}/v2/models/iris/infer", content=b"{", timeout=10)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]


def abuse_the_socket(port: int) -> None:
    """Garbage instead of HTTP, a body cut short, headers cut short: none may stop the server."""
    for raw in (
        b"\x00\xff garbage that is not HTTP\r\n\r\n",
        b'POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"inputs":',
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Partial",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            with suppress(TimeoutError, ConnectionResetError):
                sock.recv(4096)


def burst_of_mixed_requests(url: str) -> None:
    """64 concurrent requests, every other one malformed: each gets its own right answer."""
    good = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[2]}]}
    bad = {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}

    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(8) as pool:

        def one(i: int) -> tuple[int, int]:
            return i, client.post("/v2/models/iris/infer", json=bad if i % 2 else good).status_code

        results = list(pool.map(one, range(64)))
    assert results == [(i, 400 if i % 2 else 200) for i in range(64)]




def test_module_serves_over_http_on_the_port_from_env(tmp_path: Path) -> None:
    config = iris_config(tmp_path)
    port = free_port()
    env = base_env(
        PORT=str(port),
        MODELPACK_SERVING_CONFIG=str(config),
        MODELPACK_INDEX_DIGEST="sha256:" + "e" * 64,
        PYTHONPATH=str(REPO),
    )
    health = [sys.executable, "-m", "modelpack.serve.healthcheck"]
    with serving(sys.executable, env, tmp_path / "log") as url:
        assert url.endswith(str(port))
        assert_iris_golden(url)
        assert subprocess.run(health, env=env, timeout=30).returncode == 0
        abuse_the_socket(port)
        burst_of_mixed_requests(url)
        assert_iris_golden(url)
        meta = httpx.get(f"{url}/metadata").json()
        assert meta["index_digest"] == "sha256:" + "e" * 64 and meta["version"] == "1.0.0"
    down = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and f"127.0.0.1:{port}/v2/health/ready unreachable" in down.stderr


def test_two_workers_serve_the_same_model(tmp_path: Path) -> None:
    config = iris_config(tmp_path)
    env = base_env(
        PORT=str(free_port()), WORKERS="2", MODELPACK_SERVING_CONFIG=str(config), PYTHONPATH=str(REPO)
    )
    with serving(sys.executable, env, tmp_path / "log") as url:
        for _ in range(4):
            assert_iris_golden(url)


@pytest.mark.parametrize(
    ("config", "code", "needle"),
    [
        ({"name": "iris"}, 2, "handler \"onnx\" needs 'model'"),
        ({"name": "iris", "model": "absent.onnx", "model_dir": "/nonexistent"}, 3, "absent.onnx not found"),
        ({"name": "iris", "handler": "no_such_module:H"}, 3, "cannot import no_such_module"),
    ],
)
def test_bad_config_or_model_exits_with_a_one_line_reason(
    tmp_path: Path, config: dict[str, str], code: int, needle: str
) -> None:
    path = tmp_path / "serving.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = base_env(PORT=str(free_port()), MODELPACK_SERVING_CONFIG=str(path), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "modelpack.serve", "--host", "127.0.0.1", "--code-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_runs_in_a_clean_venv_with_only_its_lockfile(tmp_path: Path) -> None:
    for lock in (LOCK, ONNX_LOCK):
        lines = [ln for ln in lock.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert lines and all("==" in ln for ln in lines), "every lock line must be an exact pin"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(LOCK), "-r", str(ONNX_LOCK)],
        check=True,
        timeout=600,
    )
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, f"the lock misses a dependency: {check.stdout}"
    # Exactly the serving image's runtime layer: modelpack/__init__.py and modelpack/serve/**, nothing else.
    layer = tmp_path / "runtime"
    (layer / "modelpack").mkdir(parents=True)
    shutil.copy2(REPO / "modelpack" / "__init__.py", layer / "modelpack" / "__init__.py")
    shutil.copytree(
        REPO / "modelpack" / "serve",
        layer / "modelpack" / "serve",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    config = iris_config(tmp_path)
    env = base_env(PORT=str(free_port()), MODELPACK_SERVING_CONFIG=str(config), PYTHONPATH=str(layer))
    with serving(python, env, tmp_path / "log") as url:
        assert_iris_golden(url)


def test_a_busy_port_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    # The model cannot load: were it loaded first, the error would name it instead of the port.
    path = tmp_path / "serving.json"
    path.write_text(json.dumps({"name": "m", "model": "absent.onnx", "model_dir": "/nonexistent"}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = base_env(PORT=str(port), MODELPACK_SERVING_CONFIG=str(path), PYTHONPATH=str(REPO))
        done = subprocess.run(
            [sys.executable, "-m", "modelpack.serve", "--host", "127.0.0.1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"modelpack.serve: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "stop what uses it or set PORT / --port"
    ]
