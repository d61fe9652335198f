"""Running the app under uvicorn (httptools with guard.py's timeouts, uvloop when installed), one process or
`workers` of them."""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

import uvicorn

from modelpack.serve.app import ServingApp
from modelpack.serve.config import ServingConfig, from_mapping
from modelpack.serve.guard import GuardedHttpToolsProtocol, protocol_for

# Worker processes rebuild the config from this variable: uvicorn starts workers from an import string.
RESOLVED_ENV = "MODELPACK_SERVE_RESOLVED_CONFIG"

STARTUP_FAILED = 3  # uvicorn's own exit code for a failed lifespan startup


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
    return ServingApp(from_mapping(json.loads(os.environ[RESOLVED_ENV]), RESOLVED_ENV))


def __getattr__(name: str) -> type[GuardedHttpToolsProtocol]:
    # Worker processes get the protocol class by import string (uvicorn pickles the config to them, and a
    # class built for one config's timeouts cannot be pickled); it is built from the same variable.
    if name == "WorkerProtocol":
        return protocol_for(from_mapping(json.loads(os.environ[RESOLVED_ENV]), RESOLVED_ENV))
    raise AttributeError(f"module 'modelpack.serve.server' has no attribute {name!r}")


def run(config: ServingConfig) -> int:
    """Serve until SIGINT/SIGTERM; the exit code is STARTUP_FAILED if the model did not load."""
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    common: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "http": protocol_for(config),
        "timeout_keep_alive": config.idle_timeout_s,
        "loop": "auto",
        "lifespan": "on",
        "access_log": False,  # a log line per request costs more than the inference of a small model
        "proxy_headers": False,  # the app never reads the client address; skip the per-request middleware
        "server_header": False,
        "log_level": config.log_level,
        "timeout_graceful_shutdown": 10,
    }
    if config.workers > 1:
        os.environ[RESOLVED_ENV] = json.dumps(config.to_json())
        common["http"] = "modelpack.serve.server:WorkerProtocol"
        uvicorn.run("modelpack.serve.server:create_app", factory=True, workers=config.workers, **common)
        return 0
    server = uvicorn.Server(uvicorn.Config(ServingApp(config), **common))
    server.run()
    return 0 if server.started else STARTUP_FAILED
