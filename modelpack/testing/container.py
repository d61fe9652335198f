"""A release's serving image in a throwaway container, reachable on 127.0.0.1.

On a local engine (DOCKER_HOST unset, a unix socket, or a loopback address) the container shares the host
network (an engine run with --bridge=none has no port publishing) and binds loopback only; the port is
passed in PORT. On a remote engine (tcp:// or ssh:// to another machine, a CI service container such as
docker:dind) the engine's host network is not this machine's: the container binds all its interfaces
inside its own network and the port is published, reached at the engine's address (`placement`). It is
removed in `finally` whatever happens, so the runner works with testcontainers' reaper off (as here) or
on (GitHub's runners).
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


@dataclass(frozen=True)
class Placement:
    """How a serving container is reached: host networking on loopback, or a published port."""

    host_network: bool
    bind: str  # the HOST the runtime listens on inside the container


def placement(docker_host: str | None) -> Placement:
    """Host networking only when the engine runs on this machine: a unix socket (or none: the default
    one), an npipe, or a tcp address on loopback; anything else publishes the port."""
    text = (docker_host or "").strip()
    if not text or text.startswith(("unix://", "npipe://")):
        return Placement(True, "127.0.0.1")
    host = text.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
        return Placement(True, "127.0.0.1")
    return Placement(False, "0.0.0.0")  # inside the container's own network; the port is published


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
    where = placement(os.environ.get("DOCKER_HOST"))
    extra: dict[str, Any] = {"network_mode": "host"} if where.host_network else {}
    runtime_env = {"PORT": str(port), "HOST": where.bind, **(env or {})}
    container: Any = DockerContainer(image, env=runtime_env, **extra)
    if not where.host_network:
        container.with_exposed_ports(port)
    try:
        try:
            container.start()
        except Exception as e:  # the SDK raises many types: no engine, pull refused, bad image
            raise TestNotRunError(f"could not start {image}: {type(e).__name__}: {e}") from None
        wrapped = container.get_wrapped_container()
        if where.host_network:
            url = f"http://127.0.0.1:{port}"
        else:  # the engine's address and the port it published
            url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(port)}"

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
