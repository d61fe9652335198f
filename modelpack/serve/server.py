"""Running the app under uvicorn (httptools with guard.py's timeouts, uvloop when installed), one process or
`workers` of them, and stopping it cleanly.

Workers are uvicorn's: the parent binds the port once (a clash is one error before any model loads) and
hands the socket to `workers` spawned processes, restarting one that dies. Chosen over SO_REUSEPORT
processes, which would each bind and need a supervisor of our own for the same restarts and signals. On
the shared socket a new connection goes to whichever worker accepts it first (usually an idle one), where
SO_REUSEPORT hashes connections to workers however busy each is; either way a keep-alive connection stays
with one worker (bench/serve_bench.py measures 2 workers against 1).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from modelpack.serve.app import ServingApp
from modelpack.serve.config import ServingConfig, cpu_quota, from_mapping
from modelpack.serve.guard import GuardedHttpToolsProtocol, protocol_for
from modelpack.serve.metrics import DIR_ENV, Metrics, NoMetrics
from modelpack.serve.requestlog import RequestLog

# Worker processes rebuild the config from this variable: uvicorn starts workers from an import string.
RESOLVED_ENV = "MODELPACK_SERVE_RESOLVED_CONFIG"

STARTUP_FAILED = 3  # uvicorn's own exit code for a failed lifespan startup
# Set by whoever starts the runtime as a child (the local runner, the worker supervisor): its pid. The
# runtime then dies with it (die_with_parent).
PARENT_ENV = "MODELPACK_SERVE_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def port_problem(host: str, port: int) -> str | None:
    """Why host:port cannot be listened on, or None: checked before the model loads (slow to load)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no clash
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or set PORT / --port"
    return None


def create_app() -> ServingApp:
    """uvicorn factory for worker processes (`workers` > 1)."""
    die_with_parent()
    config = from_mapping(json.loads(os.environ[RESOLVED_ENV]), RESOLVED_ENV)
    return ServingApp(config, metrics=metrics_for(config, Path(os.environ[DIR_ENV])))


def __getattr__(name: str) -> type[GuardedHttpToolsProtocol]:
    # Worker processes get the protocol class by import string (uvicorn pickles the config to them, and a
    # class built for one config's timeouts cannot be pickled); it is built from the same variable.
    if name == "WorkerProtocol":
        return protocol_for(from_mapping(json.loads(os.environ[RESOLVED_ENV]), RESOLVED_ENV))
    raise AttributeError(f"module 'modelpack.serve.server' has no attribute {name!r}")


def metrics_for(config: ServingConfig, directory: Path | None) -> Metrics:
    if not config.metrics:
        return NoMetrics(config.name, config.version, config.bundle_digest, config.index_digest, None)
    return Metrics(config.name, config.version, config.bundle_digest, config.index_digest, directory)


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (a SIGKILLed `modelpack serve`, a
    supervisor killed by the OOM killer), so no runtime outlives whatever started it. Off Linux a no-op."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if parent.isdigit() and os.getppid() != int(parent):
        os.kill(os.getpid(), signal.SIGTERM)  # the parent died before the request was made


class _Server(uvicorn.Server):
    """uvicorn's server, ending with exit code 0 after a SIGTERM's graceful drain.

    uvicorn re-raises the signal it caught once it has drained, so the process dies of SIGTERM (143);
    Kubernetes and `docker stop` count a clean drain as a failure then. Here the handlers are restored and
    nothing is re-raised: SIGTERM -> readiness false (the app chained its handler), listener closed,
    in-flight requests finished within drain_timeout_s, lifespan shutdown, exit 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class _Workers(Multiprocess):
    """uvicorn's worker supervisor (restarts a dead worker, forwards SIGTERM), closing its own copy of the
    listening socket first when it stops: once each draining worker has closed its copy, the port refuses
    new connections at once instead of queueing them for no one."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def run(config: ServingConfig) -> int:
    """Serve until SIGINT/SIGTERM, then drain; the exit code is STARTUP_FAILED if the model did not load."""
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    workers = config.workers or cpu_quota()
    common: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "http": protocol_for(config),
        "timeout_keep_alive": config.idle_timeout_s,
        "loop": "auto",
        "lifespan": "on",
        "access_log": False,  # uvicorn's text line; the app writes its own JSON lines (requestlog.py)
        "proxy_headers": False,  # the app never reads the client address; skip the per-request middleware
        "server_header": False,
        "log_level": config.log_level,
        "timeout_graceful_shutdown": config.drain_timeout_s,
    }
    startup_line(config, workers)
    if workers == 1:
        app = ServingApp(config, metrics=metrics_for(config, None))
        server = _Server(uvicorn.Config(app, **common))
        server.run()
        app.metrics.close()
        return 0 if server.started else STARTUP_FAILED
    directory = Path(tempfile.mkdtemp(prefix="modelpack-metrics-"))
    os.environ.update(
        {RESOLVED_ENV: json.dumps(config.to_json()), DIR_ENV: str(directory), PARENT_ENV: str(os.getpid())}
    )
    common["http"] = "modelpack.serve.server:WorkerProtocol"
    try:
        uv = uvicorn.Config("modelpack.serve.server:create_app", factory=True, workers=workers, **common)
        supervisor = _Workers(uv, sockets=[uv.bind_socket()])
        supervisor.run()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    failed = any(p.exitcode == STARTUP_FAILED for p in supervisor.processes)
    return STARTUP_FAILED if failed else 0


def startup_line(config: ServingConfig, workers: int) -> None:
    """The one line that says which release this process serves, on stdout, as JSON."""
    RequestLog(config.name, config.version).line(
        level="info",
        event="starting",
        model=config.name,
        version=config.version,
        bundle_digest=config.bundle_digest,
        index_digest=config.index_digest,
        workers=workers,
        address=f"{config.host}:{config.port}",
        pid=os.getpid(),
    )
