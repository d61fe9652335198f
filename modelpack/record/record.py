"""The record: what produced a release, small enough to live in a manifest annotation.

It is written twice, as the `dev.modelpack.record` manifest annotation (compact canonical JSON, so
`inspect`, `diff`, `ls --sort` and `history` need one manifest GET per version and no blob pull) and as a
layer of its own media type (so tools that ignore annotations still carry it). It never holds a secret:
the git remote is scrubbed of userinfo before it gets here, and no environment variable is copied in.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpack import __version__
from modelpack.errors import InputError
from modelpack.oci import canonical

RECORD_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    path: str  # as it sits in the bundle, e.g. "models/model.onnx"
    sha256: str  # "sha256:<hex>"
    size: int


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    sha256: str | None  # file hash, or the hash over `sha256sum` lines of a directory
    size: int
    files: int
    path: str | None = None
    uri: str | None = None
    packaged: bool = False


@dataclass(frozen=True)
class Metric:
    value: float
    dataset: str | None = None


@dataclass(frozen=True)
class LockSummary:
    path: str
    sha256: str
    format: str
    python: str | None
    packages: Mapping[str, str]  # normalized name -> version

    @property
    def count(self) -> int:
        return len(self.packages)


@dataclass(frozen=True)
class Record:
    name: str
    version: str
    created: str  # RFC 3339, from SOURCE_DATE_EPOCH / the commit time, so rebuilds are identical
    files: tuple[FileEntry, ...] = ()
    datasets: tuple[DatasetEntry, ...] = ()
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    git: Mapping[str, Any] | None = None
    lock: LockSummary | None = None
    build: Mapping[str, str] = field(default_factory=dict)
    tests: Mapping[str, Any] = field(default_factory=dict)  # cases digest, gates
    security: Mapping[str, Any] = field(default_factory=dict)  # pickle scan findings
    serving: Mapping[str, Any] = field(default_factory=dict)  # handler, model file, port

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "recordVersion": RECORD_VERSION,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
            "datasets": [_drop_none(d.__dict__) for d in self.datasets],
            "metrics": {k: _drop_none(m.__dict__) for k, m in sorted(self.metrics.items())},
            "params": dict(self.params),
            "build": dict(self.build),
        }
        if self.git is not None:
            out["git"] = dict(self.git)
        if self.lock is not None:
            out["lock"] = {
                "path": self.lock.path,
                "sha256": self.lock.sha256,
                "format": self.lock.format,
                "python": self.lock.python,
                "packageCount": self.lock.count,
                "packages": dict(self.lock.packages),
            }
        if self.tests:
            out["tests"] = dict(self.tests)
        if self.security:
            out["security"] = dict(self.security)
        if self.serving:
            out["serving"] = dict(self.serving)
        return out

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json())

    @classmethod
    def from_json(cls, obj: Any) -> Record:
        if not isinstance(obj, Mapping) or obj.get("recordVersion") != RECORD_VERSION:
            raise InputError("not a modelpack record (missing or unknown recordVersion)")
        try:
            lock = obj.get("lock")
            return cls(
                name=str(obj["name"]),
                version=str(obj["version"]),
                created=str(obj["created"]),
                files=tuple(FileEntry(f["path"], f["sha256"], int(f["size"])) for f in obj.get("files", [])),
                datasets=tuple(DatasetEntry(**d) for d in obj.get("datasets", [])),
                metrics={
                    k: Metric(float(m["value"]), m.get("dataset")) for k, m in obj.get("metrics", {}).items()
                },
                params=dict(obj.get("params", {})),
                git=obj.get("git"),
                lock=LockSummary(
                    path=lock["path"],
                    sha256=lock["sha256"],
                    format=lock["format"],
                    python=lock.get("python"),
                    packages=dict(lock.get("packages", {})),
                )
                if lock
                else None,
                build=dict(obj.get("build", {})),
                tests=dict(obj.get("tests", {})),
                security=dict(obj.get("security", {})),
                serving=dict(obj.get("serving", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed modelpack record: {e}") from None

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Record:
        try:
            obj = canonical.loads(data)
        except ValueError as e:
            raise InputError(f"modelpack record is not JSON: {e}") from None
        return cls.from_json(obj)


def build_environment() -> dict[str, str]:
    """Which modelpack and Python produced the release. No host names, paths or environment variables."""
    return {
        "modelpack": __version__,
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
