"""Helpers shared by test modules (moved from test_serve_app.py)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st

from modelpack.serve.app import ServingApp
from modelpack.serve.config import ServingConfig
from modelpack.serve.tensors import DTYPES
from support.models import iris_onnx


class Client:
    """A synchronous face over httpx.AsyncClient + ASGITransport, one event loop per request."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def infer(self, body: Any, model: str = "affine") -> httpx.Response:
        if isinstance(body, bytes | str):
            return self.request("POST", f"/v2/models/{model}/infer", content=body)
        return self.request("POST", f"/v2/models/{model}/infer", json=body)


def make_client(tmp_path: Path, load: bool = True, **config: Any) -> Client:
    app = ServingApp(
        ServingConfig(**{"model_dir": tmp_path / "models", "code_dir": tmp_path / "code", **config})
    )
    if load:
        app.load()
    return Client(app)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


_shape = st.lists(st.integers(min_value=-2, max_value=6), max_size=4) | _json


_data = (
    st.lists(st.integers(min_value=-(2**65), max_value=2**65) | st.floats() | st.booleans(), max_size=24)
    | _json
)


_tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "t", ""]) | _json,
        "shape": _shape,
        "datatype": st.sampled_from([*DTYPES, "BF16", "fp32"]) | _json,
        "data": _data,
        "parameters": _json,
    },
)


_body = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.lists(_tensor, max_size=3) | _json,
        "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["y", "t", "z"])}), max_size=2)
        | _json,
        "id": st.text(max_size=5) | _json,
        "parameters": _json,
    },
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def iris_config(root: Path) -> Path:
    iris_onnx(root / "models" / "iris.onnx")
    config = {
        "name": "iris",
        "version": "1.0.0",
        "model": "iris.onnx",
        "model_dir": str(root / "models"),
        "code_dir": str(root / "code"),
        "bundle_digest": "sha256:" + "d" * 64,
        "record_summary": {"metrics": {"accuracy": 0.97}},
    }
    path = root / "serving.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def base_env(**extra: str) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    # One worker unless a test asks for more: the default (one per CPU) would double every test's startup
    # and memory, and the limits tests measure one process.
    return {**keep, "WORKERS": "1", **extra}


@contextmanager
def runtime(tmp_path: Path, **extra_env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = base_env(
        PORT=str(port), MODELPACK_SERVING_CONFIG=str(iris_config(tmp_path)), PYTHONUNBUFFERED="1", **extra_env
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelpack.serve", "--host", "127.0.0.1"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "runtime not ready"
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
