"""The Packfile: modelpack.yaml as frozen, typed values. `loader.py` builds it; nothing here reads files.

Every path is absolute (resolved against the packfile's directory, `Packfile.root`), already checked to
exist, and for model, code and docs, inside `root`: they land in the bundle under the same relative
path (`models/<rel>` for model files, `code/<rel>` for code, `docs/<rel>` for docs). Mappings are
stored as sorted tuples of pairs so every value here is hashable; `.as_dict()` helpers give dicts back.

The fields, as written in modelpack.yaml (see examples/iris-onnx/modelpack.yaml for a commented one):

    name          lowercase OCI repository path component: [a-z0-9]+ joined by ".", "_", "__" or "-"
    version       optional; else `modelpack build --version`, else the git tag on HEAD `vX.Y.Z` -> X.Y.Z
                  (the --version flag wins over this field; see packfile.version.resolve_version)
    description, license (SPDX expression), authors (list of strings, or one string)
    model:        paths (files or directories, or one string), format (onnx | safetensors | pytorch |
                  gguf | sklearn-pickle | other), framework (optional free text, e.g. scikit-learn)
    code:         paths (files or directories; may be empty for onnx), handler (`onnx`, the built-in,
                  or `module:Class` where module is importable from code/); optional when format is onnx
    dependencies: lockfile (requirements.txt-style, uv.lock, poetry.lock, Pipfile.lock, pylock.toml),
                  python ("3.11", quoted or not)
    datasets:     list of {name, path and/or uri and/or ref, package: false}; a path is hashed and
                  recorded, and shipped only with `package: true`; a ref (REG/REPO:VERSION, a dataset
                  pushed with `modelpack dataset push`) is recorded with its digest, and a path beside
                  it must hold the same content
    metrics:      a file name (shorthand), or {file, dataset, values, history}: `file` is JSON/YAML from
                  training (nested keys flatten with dots), `dataset` the default dataset the metrics were
                  measured on, `values` inline metrics `name: 0.97` or `name: {value: 0.97, dataset: d}`,
                  `history` the training curves: a CSV or JSONL file inside the project with a step or
                  epoch column (record/curves_read.py), or {file, better: {column: higher | lower}}
    params:       a file name (JSON/YAML), or an inline mapping of scalars
    docs:         paths
    tests:        cases (golden cases file, see record/cases.py), gates (list like "accuracy >= 0.9"),
                  latency_requests (requests timed for latency_p50/p95/p99_ms, default 100)
    serving:      base_image (default python:<dependencies.python>-slim), port (default 8080), env
                  (mapping), system_packages (list; needs builder: docker), builder (daemonless | docker)
    security:     allow_pickle_imports: globals a pickle-based weights file (.pkl, .joblib, .pt, .bin...)
                  may import that are not on the scanner's exact safe list (your own classes, or ones
                  that can run code when unpickled), e.g. ["mylib.model.Net"]; exact "module.name",
                  "module.*", or "*" (anything, even a pickle the scanner cannot read). Without it such
                  a file refuses the build (see bundle/picklescan.py); what was allowed is written in
                  the record's `security` field.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelpack.record.record import Metric, ParamValue

MODEL_FORMATS = ("onnx", "safetensors", "pytorch", "gguf", "sklearn-pickle", "other")
BUILDERS = ("daemonless", "docker")
BUILTIN_HANDLERS = ("onnx",)
DEFAULT_PYTHON = "3.11"
DEFAULT_PORT = 8080
DEFAULT_LATENCY_REQUESTS = 100

GATE_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Gate:
    """A release condition on one metric, e.g. `accuracy >= 0.9`; `==` compares exactly."""

    metric: str
    op: str
    threshold: float

    def passes(self, value: float) -> bool:
        return GATE_OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class ModelSpec:
    paths: tuple[Path, ...]
    format: str
    framework: str | None
    files: tuple[Path, ...]  # every file under `paths`, sorted by relative path


@dataclass(frozen=True)
class CodeSpec:
    paths: tuple[Path, ...]
    handler: str  # "onnx" or "module:Class"
    files: tuple[Path, ...]

    @property
    def builtin(self) -> bool:
        return self.handler in BUILTIN_HANDLERS

    @property
    def module(self) -> str | None:
        return None if self.builtin else self.handler.split(":", 1)[0]

    @property
    def class_name(self) -> str | None:
        return None if self.builtin else self.handler.split(":", 1)[1]


@dataclass(frozen=True)
class DependenciesSpec:
    lockfile: Path
    python: str  # "3.11"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: Path | None  # absolute; None when only a URI is given
    path_text: str | None  # as written in modelpack.yaml, for the record (never an absolute host path
    #                        unless the user wrote one)
    uri: str | None
    package: bool = False
    ref: str | None = None  # a published dataset, REG/REPO:VERSION; the build records its digest


@dataclass(frozen=True)
class HistorySpec:
    path: Path  # absolute, inside root; parsed by the build (record/curves_read.py)
    shown: str  # how messages name it: as written, next to the packfile as the user named that
    better: tuple[tuple[str, str], ...] = ()  # column -> "higher" | "lower", as the packfile says


@dataclass(frozen=True)
class TestsSpec:
    __test__ = False  # not a pytest class

    cases: Path | None = None
    gates: tuple[Gate, ...] = ()
    latency_requests: int = DEFAULT_LATENCY_REQUESTS


@dataclass(frozen=True)
class ServingSpec:
    base_image: str = f"python:{DEFAULT_PYTHON}-slim"
    port: int = DEFAULT_PORT
    env: tuple[tuple[str, str], ...] = ()
    system_packages: tuple[str, ...] = ()
    builder: str = "daemonless"

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True)
class SecuritySpec:
    allow_pickle_imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Packfile:
    path: Path  # the modelpack.yaml itself
    root: Path  # its directory; every relative path in it is relative to this
    name: str
    version: str | None
    description: str | None
    license: str | None
    authors: tuple[str, ...]
    model: ModelSpec
    code: CodeSpec
    dependencies: DependenciesSpec
    datasets: tuple[DatasetSpec, ...] = ()
    metrics: tuple[tuple[str, Metric], ...] = ()
    metrics_file: Path | None = None
    metrics_history: HistorySpec | None = None
    params: tuple[tuple[str, ParamValue], ...] = ()
    params_file: Path | None = None
    docs: tuple[Path, ...] = ()
    doc_files: tuple[Path, ...] = ()
    tests: TestsSpec = field(default_factory=TestsSpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    security: SecuritySpec = field(default_factory=SecuritySpec)
    training_command: str | None = None  # `training.command`: what CI runs to make the weights

    def metrics_dict(self) -> dict[str, Metric]:
        return dict(self.metrics)

    def params_dict(self) -> dict[str, ParamValue]:
        return dict(self.params)

    def dataset(self, name: str) -> DatasetSpec | None:
        return next((d for d in self.datasets if d.name == name), None)

    def relative(self, path: Path) -> str:
        """`path` relative to the packfile's directory, in posix form (its place in the bundle)."""
        return path.relative_to(self.root).as_posix()

    def with_version(self, version: str) -> Packfile:
        return dataclasses.replace(self, version=version)
