"""Small serving releases for the Docker target's tests: the custom-handler example (numpy only, so every
variant shares one deps layer), built with an image, pushed to the test registry and promoted.

Variants: `ok` (answers; its version tells which release answered), `never-ready` (its handler's load
never returns, so /v2/health/ready never answers 200), `flaky` (answers HTTP 500 to about half the
requests: a canary made worse on purpose)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from modelpack import api
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
BODY = {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [3, 80, 10]}]}

NEVER_READY = """
import time

from handler import LinearModel


class Slow(LinearModel):
    def load(self, model_dir):
        time.sleep(3600)
"""
FLAKY = """
import itertools

from handler import LinearModel

_calls = itertools.count()


class Flaky(LinearModel):
    def predict(self, inputs):
        if next(_calls) % 2:
            raise RuntimeError("made worse on purpose")
        return super().predict(inputs)
"""


def project(tmp: Path, name: str, version: str, kind: str = "ok") -> Path:
    dest = tmp / f"{name}-{version}-{kind}"
    shutil.copytree(EXAMPLES / "custom-handler", dest)
    packfile = dest / "modelpack.yaml"
    text = packfile.read_text().replace("name: house-prices", f"name: {name}", 1)
    text = text.replace("version: 0.1.0", f"version: {version}", 1)
    if kind != "ok":
        module, cls, body = {
            "never-ready": ("slow", "Slow", NEVER_READY),
            "flaky": ("flaky", "Flaky", FLAKY),
        }[kind]
        (dest / f"{module}.py").write_text(body)
        text = text.replace("paths: [handler.py]", f"paths: [handler.py, {module}.py]", 1)
        text = text.replace("handler: handler:LinearModel", f"handler: {module}:{cls}", 1)
        if kind == "flaky":  # its golden cases would fail half the time: it must get past the deploy checks
            text = text.replace("  cases: cases.json\n", "", 1)
    packfile.write_text(text)
    return dest


def build_and_push(store: LayoutStore, base: str, proj: Path, dest: str) -> str:
    with Targets(store_path=store.root) as targets:
        built = api.build(targets, proj, image=True, base=base, environ=EPOCH)
        return api.push(targets, dest, source=built.tag).destination


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Load:
    """Concurrent clients against the proxy: every answer's model_version counted, every failure kept."""

    url: str
    connections: int = 4
    versions: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for _ in range(self.connections):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                try:
                    r = http.post(self.url, json=BODY)
                    ok = r.status_code == 200
                    what = r.json().get("model_version") if ok else f"HTTP {r.status_code}: {r.text[:100]}"
                except httpx.HTTPError as e:
                    ok, what = False, f"{type(e).__name__}: {e}"
                with self._lock:
                    if ok:
                        self.versions[str(what)] += 1
                    else:
                        self.failures.append(str(what))

    def total(self) -> int:
        with self._lock:
            return sum(self.versions.values()) + len(self.failures)


def answered_by(url: str, n: int = 20) -> Counter[str]:
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10) as http:
        for _ in range(n):
            r = http.post(url, json=BODY)
            seen[r.json().get("model_version") if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
    return seen


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    """Seconds until predicate() is true; AssertionError after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s")
