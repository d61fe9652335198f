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
from modelpack.errors import ContentError
from modelpack.oci import canonical
from modelpack.record.curves import HistorySummary
from modelpack.record.evaluation import EvaluationPlan, LoadPlan
from modelpack.record.frameworks import VersionCheck
from modelpack.record.git import GitInfo, opt_str

RECORD_VERSION = 1
ParamValue = str | int | float | bool | None


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
    ref: str | None = None  # a published dataset as modelpack.yaml names it, REG/REPO:VERSION
    digest: str | None = None  # that dataset artifact's manifest digest, "sha256:..."


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
class TestPlan:
    """What `modelpack test` runs against the release: the cases file in the bundle, gates, latency."""

    __test__ = False  # not a pytest class

    cases: str | None  # bundle path, e.g. "code/cases.json"
    gates: tuple[str, ...] = ()  # e.g. "accuracy >= 0.9"
    latency_requests: int | None = None  # absent from records built before latency was measured
    evaluate: EvaluationPlan | None = None  # absent from records built before evaluation
    load: LoadPlan | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cases": self.cases, "gates": list(self.gates)}
        if self.latency_requests is not None:
            out["latencyRequests"] = self.latency_requests
        if self.evaluate is not None:
            out["evaluate"] = self.evaluate.to_json()
        if self.load is not None:
            out["load"] = self.load.to_json()
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TestPlan:
        latency = obj.get("latencyRequests")
        return cls(
            cases=opt_str(obj.get("cases")),
            gates=tuple(str(g) for g in obj.get("gates") or ()),
            latency_requests=None if latency is None else int(latency),
            evaluate=EvaluationPlan.from_json(obj["evaluate"]) if obj.get("evaluate") else None,
            load=LoadPlan.from_json(obj["load"]) if obj.get("load") else None,
        )


@dataclass(frozen=True)
class ServingInfo:
    """How the release is served: the handler, the model file in the bundle, the port, the Python."""

    handler: str
    model: str | None  # bundle path, e.g. "models/model.onnx"
    port: int
    python: str | None
    format: str

    def to_json(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "model": self.model,
            "port": self.port,
            "python": self.python,
            "format": self.format,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ServingInfo:
        return cls(
            handler=str(obj.get("handler") or "onnx"),
            model=opt_str(obj.get("model")),
            port=int(obj["port"]),
            python=opt_str(obj.get("python")),
            format=str(obj.get("format") or ""),
        )


@dataclass(frozen=True)
class PickleEntry:
    """What the scan found in one pickle of the bundle. `member` is the entry inside a zip (torch)."""

    path: str
    imports: tuple[str, ...]
    member: str | None = None
    error: str | None = None
    dangerous: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "imports": list(self.imports)}
        for key, value in (("member", self.member), ("error", self.error)):
            if value is not None:
                out[key] = value
        for key, items in (("dangerous", self.dangerous), ("unknown", self.unknown)):
            if items:
                out[key] = list(items)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PickleEntry:
        return cls(
            path=str(obj["path"]),
            imports=_strs(obj.get("imports")),
            member=opt_str(obj.get("member")),
            error=opt_str(obj.get("error")),
            dangerous=_strs(obj.get("dangerous")),
            unknown=_strs(obj.get("unknown")),
        )


@dataclass(frozen=True)
class SecurityInfo:
    """The pickle scan's findings (absent when the bundle holds no pickle) and what the packfile allowed."""

    scanner: str
    pickles: tuple[PickleEntry, ...]
    allowed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scanner": self.scanner, "pickles": [p.to_json() for p in self.pickles]}
        if self.allowed:
            out["allowed"] = list(self.allowed)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SecurityInfo:
        return cls(
            scanner=str(obj["scanner"]),
            pickles=tuple(PickleEntry.from_json(p) for p in obj.get("pickles") or ()),
            allowed=_strs(obj.get("allowed")),
        )


@dataclass(frozen=True)
class RunLink:
    """The run a release was built from: where it is, its id, and the run manifest's digest. Absent from
    records built from a project alone, so their JSON is unchanged."""

    ref: str  # HOST/REPO:run-<id> (or a store NAME:run-<id>)
    id: str
    digest: str
    checkpoint: str | None = None  # the checkpoint whose files are the weights

    def to_json(self) -> dict[str, Any]:
        out = {"ref": self.ref, "id": self.id, "digest": self.digest, "checkpoint": self.checkpoint}
        return _drop_none(out)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RunLink:
        return cls(str(obj["ref"]), str(obj["id"]), str(obj["digest"]), obj.get("checkpoint"))


@dataclass(frozen=True)
class Record:
    name: str
    version: str
    created: str  # RFC 3339, from SOURCE_DATE_EPOCH / the commit time, so rebuilds are identical
    files: tuple[FileEntry, ...] = ()
    datasets: tuple[DatasetEntry, ...] = ()
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    params: Mapping[str, ParamValue] = field(default_factory=dict)  # flat: free-form names by design
    git: GitInfo | None = None
    lock: LockSummary | None = None
    build: Mapping[str, str] = field(default_factory=dict)
    tests: TestPlan | None = None
    security: SecurityInfo | None = None  # None: the bundle holds no pickle
    serving: ServingInfo | None = None
    # the serving runtime's own packages in the image (name -> version); only in the release index's copy
    runtime: Mapping[str, str] = field(default_factory=dict)
    history: HistorySummary | None = None  # the training curves' summary; None: no metrics.history
    run: RunLink | None = None  # the experiment run it was built from (`build --run`)
    frameworks: tuple[VersionCheck, ...] = ()  # framework versions the model was made with vs the lock

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
            out["git"] = self.git.to_json()
        if self.lock is not None:
            out["lock"] = {
                "path": self.lock.path,
                "sha256": self.lock.sha256,
                "format": self.lock.format,
                "python": self.lock.python,
                "packageCount": self.lock.count,
                "packages": dict(self.lock.packages),
            }
        if self.tests is not None:
            out["tests"] = self.tests.to_json()
        if self.security is not None:
            out["security"] = self.security.to_json()
        if self.serving is not None:
            out["serving"] = self.serving.to_json()
        if self.runtime:
            out["runtime"] = {"packages": dict(sorted(self.runtime.items()))}
        if self.history is not None:
            out["history"] = self.history.to_json()
        if self.run is not None:
            out["run"] = self.run.to_json()
        if self.frameworks:
            out["frameworks"] = [c.to_json() for c in self.frameworks]
        return out

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json())

    @classmethod
    def from_json(cls, obj: Any) -> Record:
        if not isinstance(obj, Mapping) or obj.get("recordVersion") != RECORD_VERSION:
            raise ContentError("not a modelpack record (missing or unknown recordVersion)")
        try:
            lock = obj.get("lock")
            git, tests, security, serving = (obj.get(k) for k in ("git", "tests", "security", "serving"))
            return cls(
                name=str(obj["name"]),
                version=str(obj["version"]),
                created=str(obj["created"]),
                files=tuple(FileEntry(f["path"], f["sha256"], int(f["size"])) for f in obj.get("files", [])),
                # sha256 is left out when None (a dataset known by URI only), so it defaults here.
                datasets=tuple(DatasetEntry(**{"sha256": None, **d}) for d in obj.get("datasets", [])),
                metrics={
                    k: Metric(float(m["value"]), m.get("dataset")) for k, m in obj.get("metrics", {}).items()
                },
                params=dict(obj.get("params", {})),
                git=GitInfo.from_json(git) if git else None,
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
                # An empty entry was never written (the writer omits it): read it as absent.
                tests=TestPlan.from_json(tests) if tests else None,
                security=SecurityInfo.from_json(security) if security else None,
                serving=ServingInfo.from_json(serving) if serving else None,
                runtime=_runtime(obj.get("runtime")),
                history=HistorySummary.from_json(obj["history"]) if obj.get("history") else None,
                run=RunLink.from_json(obj["run"]) if obj.get("run") else None,
                frameworks=tuple(VersionCheck.from_json(c) for c in obj.get("frameworks") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ContentError(f"malformed modelpack record: {e}") from None

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Record:
        try:
            obj = canonical.loads(data)
        except ValueError as e:
            raise ContentError(f"modelpack record is not JSON: {e}") from None
        return cls.from_json(obj)


def build_environment() -> dict[str, str]:
    """Which modelpack and Python produced the release. No host names, paths or environment variables."""
    return {
        "modelpack": __version__,
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }


def _strs(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


def _runtime(obj: Any) -> dict[str, str]:
    if obj is None:
        return {}
    packages = obj.get("packages", {}) if isinstance(obj, Mapping) else None
    if not isinstance(packages, Mapping):
        raise TypeError("runtime.packages is not an object")
    return {str(k): str(v) for k, v in packages.items()}


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys ({"opt": {"lr": 0.1}} -> {"opt.lr": 0.1}): how diff, ls and runs name a
    param, so a change or a filter names its leaf. Here, not in metrics.py: `inspect` must not import yaml."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
