"""The serving config: one JSON file written into the image at build time, overridable by CLI flags.

Schema (JSON object; only `name` is required):

    name            str   model name in V2 URLs (/v2/models/{name}/...)
    version         str   model version reported by /v2/models/{name} and /metadata     (default "")
    handler         str   "onnx" or "module:Class" (a custom handler, see handlers.py)   (default "onnx")
    model           str   for "onnx": the .onnx file's path relative to model_dir        (default none)
    model_dir       str   directory holding the weights (the bundle's models/)           (default /models)
    code_dir        str   directory put first on sys.path for custom handlers            (default /code)
    bundle_digest   str   digest of the bundle artifact manifest, shown by /metadata     (default none)
    record_summary  dict  e.g. {"metrics": {...}, "revision": ...}, shown by /metadata   (default {})
    host            str   listen address; env HOST overrides it                          (default 0.0.0.0)
    port            int   listen port; env PORT overrides it                             (default 8080)
    workers         int   worker processes on the one port; env WORKERS overrides it; 0 = the
                          container's CPU quota (cgroup v2 cpu.max, v1 cfs_quota_us), else the
                          CPUs this process may run on. Each worker loads the model and has every
                          limit below to itself: memory is workers x one worker's bound  (default 0)
    inference       str   "inline": predict on the event loop, fastest for small models (measured:
                          ~10% less CPU a request than "thread"); "thread": predict in one worker
                          thread, so health probes answer during long predictions  (default "inline")
    onnx_threads    int   onnxruntime intra-op threads, 0 = onnxruntime's default       (default 0)
    max_body_bytes  int   largest request body accepted, else 413; decoding 16 MiB of JSON held the
                          GIL 1.9 s on a 2-core box (measured), stalling every other request   (default 8 MiB)
    inflight_bytes  int   request bytes being received or processed at once, over all
                          connections; a request over it is a 503 with Retry-After, never
                          buffered; 0 = 2 x max_body_bytes                                  (default 0)
    max_response_bytes int  largest answer; a bigger one is a 500 naming its outputs,
                          refused before it is encoded when the outputs' size already
                          shows it; 0 = 4 x max_body_bytes                                  (default 0)
    body_timeout_s  float a request's head and body must arrive within this, else the
                          connection is dropped (slow-loris, unfinished bodies)             (default 30)
    idle_timeout_s  float an idle keep-alive connection is closed after this               (default 5)
    write_timeout_s float a client that reads none of its answer for this long is
                          dropped, freeing the answer's memory                              (default 30)
    log_level       str   uvicorn log level                                             (default "info")
    metrics         bool  GET /metrics in the Prometheus text format (serve/metrics.py) (default true)
    request_log     bool  one JSON line per request on stdout (serve/requestlog.py)    (default true)
    request_log_level str lines below it are dropped: "info" all, "warning" 4xx and 5xx,
                          "error" 5xx only                                              (default "info")
    request_log_sample float  fraction of the info lines kept (failures always are)     (default 1.0)
    drain_timeout_s float on SIGTERM, in-flight requests get this long to finish        (default 10)

Each limit is also read from the environment, which beats the file: MODELPACK_SERVE_MAX_BODY_BYTES,
MODELPACK_SERVE_INFLIGHT_BYTES, MODELPACK_SERVE_MAX_RESPONSE_BYTES, MODELPACK_SERVE_BODY_TIMEOUT_S,
MODELPACK_SERVE_IDLE_TIMEOUT_S, MODELPACK_SERVE_WRITE_TIMEOUT_S.

The file's path comes from `--config`, else env MODELPACK_SERVING_CONFIG, else /opt/modelpack/serving.json.
The release's index digest cannot be inside the image (the index contains the image), so the runtime
reports it (in /metadata, the V2 model metadata, the metrics and its startup line) from env
MODELPACK_INDEX_DIGEST or --index-digest, when the deployer gives it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path("/opt/modelpack/serving.json")
CONFIG_ENV = "MODELPACK_SERVING_CONFIG"
INDEX_DIGEST_ENV = "MODELPACK_INDEX_DIGEST"
# The serving limits, each settable as MODELPACK_SERVE_<KEY upper-cased>.
LIMIT_ENV = (
    "max_body_bytes",
    "inflight_bytes",
    "max_response_bytes",
    "body_timeout_s",
    "idle_timeout_s",
    "write_timeout_s",
)


REQUEST_LOG_LEVELS = ("info", "warning", "error")


class ConfigError(ValueError):
    """The serving config is missing, not JSON, or has a wrong key or value; the message says which."""


@dataclass(frozen=True)
class ServingConfig:
    """Everything the runtime needs to start; see the module docstring for each field."""

    name: str
    version: str = ""
    handler: str = "onnx"
    model: str | None = None
    model_dir: Path = Path("/models")
    code_dir: Path = Path("/code")
    bundle_digest: str | None = None
    index_digest: str | None = None
    record_summary: Mapping[str, Any] = field(default_factory=dict)
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 0
    inference: str = "inline"
    onnx_threads: int = 0
    max_body_bytes: int = 8 * 1024 * 1024
    inflight_bytes: int = 0
    max_response_bytes: int = 0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 5.0
    write_timeout_s: float = 30.0
    log_level: str = "info"
    metrics: bool = True
    request_log: bool = True
    request_log_level: str = "info"
    request_log_sample: float = 1.0
    drain_timeout_s: float = 10.0

    @property
    def inflight_limit(self) -> int:
        return self.inflight_bytes or 2 * self.max_body_bytes

    @property
    def response_limit(self) -> int:
        return self.max_response_bytes or 4 * self.max_body_bytes

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-safe data (paths as strings), so a worker process can rebuild it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["model_dir"] = str(self.model_dir)
        out["code_dir"] = str(self.code_dir)
        out["record_summary"] = dict(self.record_summary)
        return out


_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "version": (str,),
    "handler": (str,),
    "model": (str, type(None)),
    "model_dir": (str,),
    "code_dir": (str,),
    "bundle_digest": (str, type(None)),
    "index_digest": (str, type(None)),
    "record_summary": (dict,),
    "host": (str,),
    "port": (int,),
    "workers": (int,),
    "inference": (str,),
    "onnx_threads": (int,),
    "max_body_bytes": (int,),
    "inflight_bytes": (int,),
    "max_response_bytes": (int,),
    "body_timeout_s": (int, float),
    "idle_timeout_s": (int, float),
    "write_timeout_s": (int, float),
    "log_level": (str,),
    "metrics": (bool,),
    "request_log": (bool,),
    "request_log_level": (str,),
    "request_log_sample": (int, float),
    "drain_timeout_s": (int, float),
}


def from_mapping(data: Mapping[str, Any], where: str) -> ServingConfig:
    """Validate a parsed config (file contents, flags or both) and build the dataclass."""
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; known keys: {', '.join(_TYPES)}")
    for key, value in data.items():
        allowed = _TYPES[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ConfigError(f"{where}: '{key}' must be {names}, got {value!r:.60}")
    if not data.get("name"):
        raise ConfigError(f"{where}: 'name' (the model name served under /v2/models/NAME) is required")
    values = dict(data)
    for key in ("model_dir", "code_dir"):
        if key in values:
            values[key] = Path(values[key])
    config = ServingConfig(**values)
    _check(config, where)
    return config


def _check(config: ServingConfig, where: str) -> None:
    if not 0 < config.port < 65536:
        raise ConfigError(f"{where}: 'port' must be 1..65535, got {config.port}")
    if config.workers < 0:
        raise ConfigError(f"{where}: 'workers' must be 1 or more, or 0 for one per CPU, got {config.workers}")
    if config.request_log_level not in REQUEST_LOG_LEVELS:
        raise ConfigError(
            f"{where}: 'request_log_level' must be one of {', '.join(REQUEST_LOG_LEVELS)}, "
            f"got {config.request_log_level!r}"
        )
    if not 0 <= config.request_log_sample <= 1:
        raise ConfigError(f"{where}: 'request_log_sample' must be 0..1, got {config.request_log_sample}")
    if config.drain_timeout_s <= 0:
        raise ConfigError(f"{where}: 'drain_timeout_s' must be positive, got {config.drain_timeout_s}")
    if config.inference not in ("inline", "thread"):
        raise ConfigError(f'{where}: \'inference\' must be "inline" or "thread", got {config.inference!r}')
    if config.handler != "onnx" and config.handler.count(":") != 1:
        raise ConfigError(f'{where}: \'handler\' must be "onnx" or "module:Class", got {config.handler!r}')
    if config.handler == "onnx" and not config.model:
        raise ConfigError(f"{where}: handler \"onnx\" needs 'model', the .onnx path relative to model_dir")
    if config.max_body_bytes < 1 or config.onnx_threads < 0:
        raise ConfigError(f"{where}: 'max_body_bytes' must be positive and 'onnx_threads' not negative")
    for key in LIMIT_ENV:
        value = getattr(config, key)
        if value < 0 or (key.endswith("_s") and value == 0):
            raise ConfigError(f"{where}: '{key}' must be positive (0 only for the derived byte limits)")
    if config.inflight_limit < config.max_body_bytes:
        raise ConfigError(f"{where}: 'inflight_bytes' must be at least 'max_body_bytes', or 0 for 2 x it")


def load(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> ServingConfig:
    """The config from `path` (else env, else the default path when it exists), env and flag overrides.

    Precedence, lowest first: built-in defaults, the file, env PORT/WORKERS/HOST/MODELPACK_INDEX_DIGEST and
    MODELPACK_SERVE_* limits, flags
    (the environment beats the file because `docker run -e PORT=...` must move a built image's port).
    """
    explicit = path or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    file_path = explicit or DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if explicit is not None or file_path.is_file():
        data.update(_read(file_path))
        where = str(file_path)
    else:
        where = "command line"
    for key, var in (("port", "PORT"), ("workers", "WORKERS")):
        if env.get(var):
            try:
                data[key] = int(env[var])
            except ValueError:
                raise ConfigError(f"environment {var}={env[var]!r} is not an integer") from None
    for key in LIMIT_ENV:
        var = f"MODELPACK_SERVE_{key.upper()}"
        if env.get(var):
            try:
                data[key] = float(env[var]) if key.endswith("_s") else int(env[var])
            except ValueError:
                raise ConfigError(f"environment {var}={env[var]!r} is not a number") from None
    if env.get(INDEX_DIGEST_ENV):
        data["index_digest"] = env[INDEX_DIGEST_ENV]
    if env.get("HOST"):
        # With host networking (an engine without a bridge) the container must be told to bind loopback.
        data["host"] = env["HOST"]
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if "name" not in data and explicit is None:
        raise ConfigError(
            f"no serving config: {file_path} does not exist; pass --config FILE, set {CONFIG_ENV}, "
            "or give --name and --handler"
        )
    return from_mapping(data, where)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"serving config {path} cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"serving config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"serving config {path} must be a JSON object")
    return data


def with_overrides(config: ServingConfig, **changes: Any) -> ServingConfig:
    """A copy with some fields changed (tests and `modelpack serve` adjust host/port this way)."""
    return replace(config, **changes)


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup"), allowed: int | None = None) -> int:
    """How many CPUs this process may use: the cgroup's CPU quota rounded up (v2 `cpu.max`, v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`), else the CPUs it may be scheduled on; at least 1."""
    cpus = allowed or len(os.sched_getaffinity(0))
    quota: float | None = None
    try:
        limit, period = (cgroup / "cpu.max").read_text().split()[:2]
        quota = None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        try:
            limit = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
            quota = None if int(limit) <= 0 else int(limit) / int(period)
        except (OSError, ValueError):
            quota = None
    if quota is None:
        return max(1, cpus)
    return max(1, min(cpus, -int(-quota // 1)))


def env_of() -> Mapping[str, str]:
    """The process environment, read once at the edge so the rest takes env as a parameter."""
    return dict(os.environ)
