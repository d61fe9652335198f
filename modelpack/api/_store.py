"""`gc` (the local store), `login`/`logout` (docker's config.json) and `init` (a new project)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import UsageError
from modelpack.store.caches import CacheSweep, sweep_caches
from modelpack.store.gc import GcResult
from modelpack.targets import Targets

__all__ = [
    "GcOutcome",
    "InitOutcome",
    "LoginResult",
    "LogoutResult",
    "gc",
    "init",
    "login",
    "logout",
    "registry_host",
]


@dataclass(frozen=True)
class GcOutcome:
    store: str
    result: GcResult
    grace: float
    caches: CacheSweep | None = None  # None: no store to sweep yet

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "store": self.store,
            "removedBlobs": r.removed_blobs,
            "freedBytes": r.freed_bytes,
            "removedTempFiles": r.removed_temp_files,
            "droppedEntries": r.dropped_entries,
            "keptYoung": r.kept_young,
            "removedCaches": self.caches.removed if self.caches else 0,
            "cacheFreedBytes": self.caches.freed_bytes if self.caches else 0,
        }


def gc(targets: Targets, *, grace: float = 3600.0) -> GcOutcome:
    """Remove blobs of the local store no tag reaches (and leftovers of interrupted writes), then the
    caches only those blobs needed (store/caches.py), older than `grace` seconds: younger ones may belong
    to a write in progress."""
    if grace < 0:
        raise UsageError(f"--grace must be 0 or more seconds, not {grace:g}")
    store = targets.store
    result = store.gc(grace_seconds=grace)
    if not store.index_path.is_file():
        return GcOutcome(str(targets.store_path), result, grace)
    with store.stat_cache() as cache:
        swept = sweep_caches(store.root, store.has_blob, cache, grace_seconds=grace)
    return GcOutcome(str(targets.store_path), result, grace, swept)


def registry_host(text: str) -> str:
    """`https://host:5000/`, `host:5000` -> `host:5000`; docker's v1 Hub URL -> docker.io."""
    from modelpack.registry.reference import DOCKER_HUB

    host = text.split("://", 1)[1] if "://" in text else text
    host = host.split("/", 1)[0].strip()
    if not host or any(c.isspace() for c in host):
        raise UsageError(f"{text!r} is not a registry", hint="e.g. ghcr.io or 127.0.0.1:5000")
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


@dataclass(frozen=True)
class LoginResult:
    registry: str
    config: Path

    def to_json(self) -> dict[str, Any]:
        return {"registry": self.registry, "config": str(self.config)}


def login(targets: Targets, registry: str, username: str, secret: str) -> LoginResult:
    """Check the credentials against the registry, then save them in docker's config.json."""
    from modelpack.registry.login import login as save

    host = registry_host(registry)
    tls = targets.tls
    path = save(host, username, secret, ca_file=tls.ca_file, insecure=tls.insecure, plain_http=tls.plain_http)
    return LoginResult(host, path)


@dataclass(frozen=True)
class LogoutResult:
    registry: str
    removed: bool

    def to_json(self) -> dict[str, Any]:
        return {"registry": self.registry, "removed": self.removed}


def logout(registry: str) -> LogoutResult:
    """Remove the saved credentials for a registry (and from its credential helper)."""
    from modelpack.registry.login import logout as forget

    host = registry_host(registry)
    return LogoutResult(host, forget(host))


@dataclass(frozen=True)
class InitOutcome:
    root: Path
    created: tuple[Path, ...]
    replaced: tuple[Path, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "created": [str(p) for p in self.created],
            "replaced": [str(p) for p in self.replaced],
            "notes": list(self.notes),
        }


def init(
    directory: Path,
    *,
    name: str | None = None,
    handler: str = "onnx",
    model: Path | None = None,
    registry: str | None = None,
    force: bool = False,
    modelpack_from: str | None = None,
) -> InitOutcome:
    """Scaffold a project that builds and tests green as generated (refuses to replace files unless
    `force`); its CI installs modelpack from where the running one came from, or `modelpack_from`."""
    from modelpack import init as scaffold  # renders templates, imports onnx: only when run

    r = scaffold.init(
        directory,
        name=name,
        handler=handler,
        model=model,
        registry=registry,
        force=force,
        modelpack_from=modelpack_from,
    )
    return InitOutcome(r.root, r.created, r.replaced, r.notes)
