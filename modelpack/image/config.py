"""The serving image's config: the base image's config, extended with our layers and how to run us.

Pure: takes the base config JSON and our layers' diff IDs, returns the new config JSON. The base's own
settings (PATH, locale) are kept; ours are added after them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpack.errors import BuildError

RUNTIME_ROOT = "/opt/modelpack"
DEPS_DIR = f"{RUNTIME_ROOT}/deps"
RUNTIME_DIR = f"{RUNTIME_ROOT}/runtime"
SERVING_CONFIG = f"{RUNTIME_ROOT}/serving.json"
# A fixed, unprivileged uid/gid that needs no /etc/passwd entry in the base (distroless uses the same).
NONROOT = "65532:65532"
SECOND = 1_000_000_000

HEALTHCHECK_PY = (
    "import os,urllib.request;"
    "urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('PORT','8080'), timeout=2)"
)


@dataclass(frozen=True)
class LayerInfo:
    diff_id: str  # digest of the uncompressed tar (for an uncompressed layer: the blob digest)
    created_by: str  # shown by `docker history`


@dataclass(frozen=True)
class RunSettings:
    port: int = 8080
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


def scrape_labels(port: int) -> dict[str, str]:
    """Where a scraper finds the runtime's metrics: the `prometheus.io/*` convention, which Prometheus'
    docker_sd_configs exposes as __meta_docker_container_label_prometheus_io_* for relabelling, and which
    Kubernetes manifests repeat as pod annotations."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def _env_dict(env: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def image_config(
    base: Mapping[str, Any],
    layers: Sequence[LayerInfo],
    run: RunSettings,
    created: str,
    arch: str = "amd64",
) -> dict[str, Any]:
    if base.get("os") not in (None, "linux"):
        raise BuildError(f"base image is for {base.get('os')}, not linux")
    if base.get("architecture") not in (None, arch):
        raise BuildError(f"base image is for {base.get('architecture')}, not {arch}; pick a {arch} base")
    cfg = copy.deepcopy(dict(base))
    inner: dict[str, Any] = dict(cfg.get("config") or {})

    env = _env_dict(inner.get("Env") or [])
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    pythonpath = ":".join(p for p in (RUNTIME_DIR, DEPS_DIR, env.get("PYTHONPATH", "")) if p)
    env.update(
        {
            "PYTHONPATH": pythonpath,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "MODELPACK_SERVING_CONFIG": SERVING_CONFIG,
            "PORT": str(run.port),
        }
    )
    env.update(run.env)

    labels = dict(inner.get("Labels") or {})
    labels.update(scrape_labels(run.port))
    labels.update(run.labels)
    inner.update(
        {
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Entrypoint": None,
            "Cmd": ["python3", "-m", "modelpack.serve"],
            "User": NONROOT,
            "WorkingDir": "/",
            "ExposedPorts": {f"{run.port}/tcp": {}},
            "Labels": dict(sorted(labels.items())),
            # Docker reads this field of the config; OCI runtimes ignore it.
            "Healthcheck": {
                "Test": ["CMD", "python3", "-c", HEALTHCHECK_PY],
                "Interval": 10 * SECOND,
                "Timeout": 3 * SECOND,
                "StartPeriod": 30 * SECOND,
                "Retries": 3,
            },
        }
    )
    cfg["config"] = inner
    cfg["architecture"] = arch
    cfg["os"] = "linux"
    cfg["created"] = created
    rootfs = dict(cfg.get("rootfs") or {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.diff_id for layer in layers)]
    cfg["rootfs"] = rootfs
    history = list(cfg.get("history") or [])
    history += [{"created": created, "created_by": layer.created_by} for layer in layers]
    cfg["history"] = history
    cfg.pop("container_config", None)  # docker-import leftovers describe the base's build, not ours
    cfg.pop("container", None)
    return cfg
