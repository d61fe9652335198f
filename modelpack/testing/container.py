"""A release's serving image in a throwaway container, reachable on 127.0.0.1.

The container shares the host network (an engine run with --bridge=none has no port publishing) and
binds loopback only; the port is passed in PORT. It is removed in `finally` whatever happens, so the
runner works with testcontainers' reaper off (as here) or on (GitHub's runners).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from modelpack.errors import TestNotRunError


@dataclass(frozen=True)
class Running:
    url: str  # http://127.0.0.1:PORT
    container_id: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, timeout: float, alive: Callable[[], bool], sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Polls /v2/health/ready until it answers 200, the process dies, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"{url}/v2/health/ready").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            if not alive():
                return False
            sleep(0.2)
    return False


@contextmanager
def serving_container(
    image: str,
    *,
    env: dict[str, str] | None = None,
    port: int | None = None,
    ready_timeout: float = 90.0,
) -> Iterator[Running]:
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer

    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        # The reaper is an image pulled from Docker Hub, which air-gapped and mirror-only engines cannot
        # reach; the `finally` below removes the container anyway. Set the variable to opt back in.
        testcontainers_config.ryuk_disabled = True
    port = port or free_port()
    container: Any = DockerContainer(
        image,
        env={"PORT": str(port), "HOST": "127.0.0.1", **(env or {})},
        network_mode="host",
    )
    try:
        try:
            container.start()
        except Exception as e:  # the SDK raises many types: no engine, pull refused, bad image
            raise TestNotRunError(f"could not start {image}: {type(e).__name__}: {e}") from None
        wrapped = container.get_wrapped_container()
        url = f"http://127.0.0.1:{port}"

        def alive() -> bool:
            wrapped.reload()
            return bool(wrapped.status in ("created", "running"))

        if not wait_ready(url, ready_timeout, alive):
            raise TestNotRunError(_not_ready(wrapped, image, url, ready_timeout))
        yield Running(url=url, container_id=wrapped.id)
    finally:
        with contextlib.suppress(Exception):  # already gone, or never created: nothing to remove
            container.stop()


def _not_ready(wrapped: Any, image: str, url: str, ready_timeout: float) -> str:
    """Why the container is not serving: it exited (with its code), or it never answered in time."""
    with contextlib.suppress(Exception):
        wrapped.reload()
    state = wrapped.attrs.get("State") or {}
    if wrapped.status in ("created", "running"):
        what = f"never became ready on {url}/v2/health/ready within {ready_timeout:.0f} s"
    else:
        what = f"exited with code {state.get('ExitCode', '?')} before it was ready on {url}"
    logs = wrapped.logs(tail=30).decode(errors="replace").strip() or "(no output)"
    return f"the container of {image} {what}; last container logs:\n{logs}"
