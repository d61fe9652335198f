"""The run record: what one training run was, written once when it ends (finished, failed or killed).

A run is a record of its own, not a release: it exists from the run's first step, whether or not a model
is ever built from it. The record is canonical JSON (same run, same bytes); its `summary()` is the small
part a listing carries in the run manifest's annotation, so `runs ls` filters and sorts thousands of runs
without reading one record blob.

Absent facts are recorded as absent, never guessed: no GPU is `gpus: []` with the probe that said so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import canonical
from modelpack.record.git import GitInfo, opt_str
from modelpack.record.record import flatten

SCHEMA = "dev.modelpack.run/v1"
RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
STATUSES = (RUNNING, FINISHED, FAILED, KILLED)
FINAL = frozenset({FINISHED, FAILED, KILLED})
MAX_SUMMARY_PARAMS = 64  # a listing's annotation stays small; the record blob keeps them all


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int | None
    driver: str | None
    cuda: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "memoryBytes": self.memory_bytes, "driver": self.driver, "cuda": self.cuda}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Gpu:
        mem = obj.get("memoryBytes")
        return cls(
            str(obj["name"]),
            int(mem) if mem is not None else None,
            opt_str(obj.get("driver")),
            opt_str(obj.get("cuda")),
        )


@dataclass(frozen=True)
class Host:
    """The machine: `gpu_probe` says how GPUs were looked for and what answered (or why nothing did)."""

    hostname: str
    os: str
    python: str
    cpu_model: str | None
    cpu_count: int | None
    memory_bytes: int | None
    gpus: tuple[Gpu, ...] = ()
    gpu_probe: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "os": self.os,
            "python": self.python,
            "cpuModel": self.cpu_model,
            "cpuCount": self.cpu_count,
            "memoryBytes": self.memory_bytes,
            "gpus": [g.to_json() for g in self.gpus],
            "gpuProbe": self.gpu_probe,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Host:
        return cls(
            hostname=str(obj.get("hostname", "")),
            os=str(obj.get("os", "")),
            python=str(obj.get("python", "")),
            cpu_model=opt_str(obj.get("cpuModel")),
            cpu_count=_opt_int(obj.get("cpuCount")),
            memory_bytes=_opt_int(obj.get("memoryBytes")),
            gpus=tuple(Gpu.from_json(g) for g in obj.get("gpus") or ()),
            gpu_probe=str(obj.get("gpuProbe", "")),
        )


@dataclass(frozen=True)
class DatasetUse:
    """A published dataset the run read: the reference as given and the digest it resolved to then."""

    ref: str
    digest: str
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "digest": self.digest, "sha256": self.sha256}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DatasetUse:
        return cls(str(obj["ref"]), str(obj["digest"]), opt_str(obj.get("sha256")))


@dataclass(frozen=True)
class CheckpointFile:
    path: str  # relative to the checkpoint's root
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Checkpoint:
    """Weights saved during the run: the files' digests (their bytes are layers of the run artifact), the
    step, the metrics at that step and how long training had run."""

    name: str
    step: int | None
    elapsed: float  # seconds since the run started
    files: tuple[CheckpointFile, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "elapsed": round(self.elapsed, 3),
            "files": [f.to_json() for f in self.files],
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Checkpoint:
        files = tuple(CheckpointFile(str(f["path"]), str(f["digest"]), int(f["size"])) for f in obj["files"])
        return cls(
            str(obj["name"]),
            _opt_int(obj.get("step")),
            float(obj.get("elapsed", 0.0)),
            files,
            {str(k): float(v) for k, v in (obj.get("metrics") or {}).items()},
        )


@dataclass(frozen=True)
class Failure:
    """Why a run did not finish: the exception (type, message, the last frames), or the signal."""

    kind: str  # "exception", "signal" or "exit" (a wrapped command's non-zero status)
    type: str  # exception class, signal name (SIGTERM) or the exit status
    message: str = ""
    traceback: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Failure:
        return cls(
            str(obj["kind"]), str(obj["type"]), str(obj.get("message", "")), str(obj.get("traceback", ""))
        )


@dataclass(frozen=True)
class RunRecord:
    id: str
    experiment: str
    status: str
    started: str  # ISO 8601 UTC, millisecond precision
    ended: str | None
    duration: float | None  # seconds
    command: tuple[str, ...]
    git: GitInfo | None
    host: Host
    env: Mapping[str, str]
    packages: Mapping[str, str]
    params: Mapping[str, Any]
    tags: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)  # each metric's last logged value
    steps: int = 0  # rows logged
    datasets: tuple[DatasetUse, ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()
    failure: Failure | None = None
    notes: tuple[str, ...] = ()  # what the run could not record, said once (e.g. "psutil missing")

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def finished(self, status: str, ended: str, duration: float, failure: Failure | None) -> RunRecord:
        return replace(self, status=status, ended=ended, duration=duration, failure=failure)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "id": self.id,
            "experiment": self.experiment,
            "status": self.status,
            "started": self.started,
            "ended": self.ended,
            "duration": None if self.duration is None else round(self.duration, 3),
            "command": list(self.command),
            "git": self.git.to_json() if self.git else None,
            "host": self.host.to_json(),
            "env": dict(sorted(self.env.items())),
            "packages": dict(sorted(self.packages.items())),
            "params": dict(self.params),
            "tags": list(self.tags),
            "metrics": dict(self.metrics),
            "steps": self.steps,
            "datasets": [d.to_json() for d in self.datasets],
            "checkpoints": [c.to_json() for c in self.checkpoints],
            "failure": self.failure.to_json() if self.failure else None,
            "notes": list(self.notes),
        }

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RunRecord:
        if obj.get("schema") != SCHEMA:
            raise ContentError(f"not a modelpack run record (schema {obj.get('schema')!r})")
        try:
            status = str(obj["status"])
            if status not in STATUSES:
                raise ValueError(f"status {status!r}")
            return cls(
                id=str(obj["id"]),
                experiment=str(obj.get("experiment", "")),
                status=status,
                started=str(obj["started"]),
                ended=opt_str(obj.get("ended")),
                duration=None if obj.get("duration") is None else float(obj["duration"]),
                command=tuple(str(a) for a in obj.get("command") or ()),
                git=GitInfo.from_json(obj["git"]) if obj.get("git") else None,
                host=Host.from_json(obj.get("host") or {}),
                env={str(k): str(v) for k, v in (obj.get("env") or {}).items()},
                packages={str(k): str(v) for k, v in (obj.get("packages") or {}).items()},
                params=dict(obj.get("params") or {}),
                tags=tuple(str(t) for t in obj.get("tags") or ()),
                metrics={str(k): float(v) for k, v in (obj.get("metrics") or {}).items()},
                steps=int(obj.get("steps", 0)),
                datasets=tuple(DatasetUse.from_json(d) for d in obj.get("datasets") or ()),
                checkpoints=tuple(Checkpoint.from_json(c) for c in obj.get("checkpoints") or ()),
                failure=Failure.from_json(obj["failure"]) if obj.get("failure") else None,
                notes=tuple(str(n) for n in obj.get("notes") or ()),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ContentError(f"run record is malformed: {e}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> RunRecord:
        try:
            obj = canonical.loads(data)
        except ValueError as e:
            raise ContentError(f"run record is not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise ContentError("run record is not a JSON object")
        return cls.from_json(obj)

    def summary(self) -> Summary:
        return Summary(
            id=self.id,
            status=self.status,
            started=self.started,
            duration=self.duration,
            params=dict(list(flatten(self.params).items())[:MAX_SUMMARY_PARAMS]),
            metrics=dict(self.metrics),
            tags=self.tags,
            datasets=tuple(d.digest for d in self.datasets),
            dataset_refs=tuple(d.ref for d in self.datasets),
            commit=self.git.commit if self.git else None,
            checkpoints=len(self.checkpoints),
        )


@dataclass(frozen=True)
class Summary:
    """What a listing knows of a run without its record blob (the run manifest's annotation)."""

    id: str
    status: str
    started: str
    duration: float | None
    params: Mapping[str, Any]  # flattened (dotted keys), scalars
    metrics: Mapping[str, float]
    tags: tuple[str, ...]
    datasets: tuple[str, ...]  # digests of the published datasets read
    dataset_refs: tuple[str, ...] = ()
    commit: str | None = None
    checkpoints: int = 0
    digest: str | None = None  # the run manifest's, filled in by the listing

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "started": self.started,
            "duration": None if self.duration is None else round(self.duration, 3),
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "tags": list(self.tags),
            "datasets": list(self.datasets),
            "datasetRefs": list(self.dataset_refs),
            "commit": self.commit,
            "checkpoints": self.checkpoints,
        }
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], digest: str | None = None) -> Summary:
        """Checked by type rather than converted field by field: a listing builds 10,000 of these, and
        JSON from a registry either has these shapes or is refused."""
        get = obj.get
        metrics, params = get("metrics") or {}, get("params") or {}
        tags, datasets, refs = get("tags") or [], get("datasets") or [], get("datasetRefs") or []
        duration, commit = get("duration"), get("commit")
        ok = (
            isinstance(get("id"), str) and isinstance(get("status"), str)
            and isinstance(get("started"), str)
            and isinstance(metrics, dict) and isinstance(params, dict)
            and all(type(v) in (int, float) for v in metrics.values())
            and all(isinstance(t, str) for t in (*tags, *datasets, *refs))
            and (duration is None or type(duration) in (int, float))
            and (commit is None or isinstance(commit, str))
        )  # fmt: skip
        if not ok:
            raise ContentError(f"run summary is malformed: {str(obj)[:200]}")
        return cls(obj["id"], obj["status"], obj["started"], duration, params, metrics, tuple(tags),
                   tuple(datasets), tuple(refs), commit, int(get("checkpoints") or 0), digest)  # fmt: skip


    # a second spelling of from_json: rows the listing cache kept after from_json accepted them
    @classmethod
    def trusted(cls, obj: Mapping[str, Any], digest: str | None) -> Summary:
        get = obj.get
        return cls(
            obj["id"], obj["status"], obj["started"], get("duration"), get("params") or {},
            get("metrics") or {}, tuple(get("tags") or ()), tuple(get("datasets") or ()),
            tuple(get("datasetRefs") or ()), get("commit"), int(get("checkpoints") or 0), digest,
        )  # fmt: skip



def last_values(rows: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for _, values in rows:
        out.update(values)
    return out


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
