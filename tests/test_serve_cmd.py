"""`modelpack serve`: a project directory served as is, in the foreground, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.clirun import script

from modelpack.testing.container import free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"modelpack serve exited with {proc.returncode}: {proc.communicate()[1]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} never became ready")


def _await_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> list[str]:
    """Reads stderr until a line holds `needle`: the server may answer before modelpack has seen it ready,
    and a Ctrl-C sent in between would (rightly) stop it before it said where it serves."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    pytest.fail(f"modelpack serve never said {needle!r}: {''.join(lines)}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _serve(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MODELPACK_SERVING_CONFIG")}
    return subprocess.Popen(
        [str(script()), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_serve_a_project_directory_then_stop_on_sigint() -> None:
    port = free_port()
    proc = _serve(str(EXAMPLES / "custom-handler"), "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc)
        request = {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [3, 80, 10]}]}
        answer = httpx.post(f"{url}/v2/models/house-prices/infer", json=request, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == pytest.approx([242.5], abs=1e-3)
        said = _await_line(proc, f"serving on http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGINT)  # to modelpack only, as a supervisor would: it must stop its child
        _, rest = proc.communicate(timeout=30)
        err = "".join(said) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"serving on http://127.0.0.1:{port}" in err and "stopped" in err
    assert not _listening(port)  # the runtime process is gone too


def test_serve_a_directory_without_a_packfile_is_an_input_error(tmp_path: Path) -> None:
    proc = _serve(str(tmp_path))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"no modelpack.yaml in {tmp_path}" in err


def test_serving_a_project_without_the_serve_extra_is_one_line(tmp_path: Path) -> None:
    """The environment lacks uvicorn (hidden from the import system here, as in a plain `pip install`)."""
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'uvicorn' else real(name, *a)\n"
        "from modelpack.cli import main\n"
        f"sys.exit(main(['serve', {str(EXAMPLES / 'iris-onnx')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "pip install 'modelpack-release[serve]'" in done.stderr
