"""modelpack.yaml -> Packfile. Reads the YAML as nodes, so every refusal names file, line and key.

The loader also checks what the file points at: named files exist, the model is not empty, metrics are
numbers, datasets exist, the handler's module is among the code paths, the cases file is valid. It does
not hash anything (that is the build's job) and never raises anything but InputError.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from modelpack.bundle.cases import load_cases
from modelpack.bundle.metrics import (
    ParamValue,
    flatten_params,
    load_metrics_file,
    load_params_file,
    located,
    yaml_problem,
)
from modelpack.bundle.record import Metric
from modelpack.errors import InputError
from modelpack.packfile import files
from modelpack.packfile.gates import parse_gate
from modelpack.packfile.nodes import Doc, did_you_mean, is_null
from modelpack.packfile.schema import (
    BUILDERS,
    BUILTIN_HANDLERS,
    DEFAULT_LATENCY_REQUESTS,
    DEFAULT_PORT,
    DEFAULT_PYTHON,
    MODEL_FORMATS,
    CodeSpec,
    DatasetSpec,
    DependenciesSpec,
    Gate,
    ModelSpec,
    Packfile,
    ServingSpec,
    TestsSpec,
)
from modelpack.packfile.version import TAG_HINT, is_oci_tag

TOP_KEYS = (
    "name", "version", "description", "license", "authors", "model", "code", "dependencies",
    "datasets", "metrics", "params", "docs", "tests", "serving",
)  # fmt: skip
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HANDLER = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_PACKFILE = 1 << 20


def load_packfile(path: Path | str) -> Packfile:
    """Read and validate modelpack.yaml (or a directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "modelpack.yaml"
    display = str(path)
    try:
        raw = path.read_bytes()[: _MAX_PACKFILE + 1]
    except FileNotFoundError:
        raise InputError(f"{display}: no such file", hint="run 'modelpack init' to create one") from None
    except OSError as e:
        raise InputError(f"{display}: cannot read: {e.strerror}") from None
    if len(raw) > _MAX_PACKFILE:
        raise InputError(f"{display}: larger than 1 MiB; is this really a modelpack.yaml?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{display}: not UTF-8 text (byte {e.start})") from None
    return parse_packfile(text, path=path.absolute(), display=display)


def parse_packfile(text: str, *, path: Path, display: str | None = None) -> Packfile:
    """Validate packfile text as if it were at `path` (relative paths resolve against its directory)."""
    doc = Doc(display or str(path))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{doc.display}{line}: not valid YAML: {e.problem or e.context}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise InputError(f"{doc.display}: not valid YAML: {yaml_problem(e)}") from None
    if node is None:
        raise InputError(f"{doc.display}: is empty", hint="run 'modelpack init' for a commented template")
    try:
        return _Reader(doc, path.parent).packfile(node, path)
    except RecursionError:
        raise InputError(f"{doc.display}: nested too deeply") from None


class _Reader:
    def __init__(self, doc: Doc, root: Path) -> None:
        self.doc = doc
        self.root = root

    def packfile(self, node: yaml.Node, path: Path) -> Packfile:
        d = self.doc
        top = d.mapping(node, "", TOP_KEYS, required=("name", "model", "dependencies"))
        name = self.name(top["name"])
        version = d.optional_string(top.get("version"), "version")
        if version is not None and not is_oci_tag(version):
            raise d.error(top["version"], "version", f"{version!r} cannot be an OCI tag", hint=TAG_HINT)
        model = self.model(top["model"])
        dependencies = self.dependencies(top["dependencies"])
        code = self.code(top.get("code"), model.format)
        datasets = self.datasets(top.get("datasets"))
        metrics, metrics_file = self.metrics(top.get("metrics"), datasets)
        params, params_file = self.params(top.get("params"))
        docs = tuple(self.paths(top.get("docs"), "docs", inside=True))
        return Packfile(
            path=path,
            root=self.root,
            name=name,
            version=version,
            description=d.optional_string(top.get("description"), "description"),
            license=d.optional_string(top.get("license"), "license"),
            authors=tuple(s for s, _ in d.strings(top.get("authors"), "authors")),
            model=model,
            code=code,
            dependencies=dependencies,
            datasets=datasets,
            metrics=metrics,
            metrics_file=metrics_file,
            params=params,
            params_file=params_file,
            docs=docs,
            doc_files=files.expand(docs, self.root),
            tests=self.tests(top.get("tests")),
            serving=self.serving(top.get("serving"), dependencies.python),
        )

    def shown(self, text: str) -> str:
        """How to name a file the packfile points at in errors: as the packfile itself was named."""
        return os.path.normpath(os.path.join(os.path.dirname(self.doc.display), text))

    # --- paths ----------------------------------------------------------------------------------------

    def path(self, node: yaml.Node, key: str, *, inside: bool, kind: str = "any") -> tuple[Path, str]:
        """(absolute path, text as written) of an existing file or directory named at `node`."""
        text = self.doc.string(node, key)
        if "\0" in text:
            raise self.doc.error(node, key, "a path cannot contain a NUL character")
        lexical = os.path.normpath(os.path.join(self.root, os.path.expanduser(text)))
        if inside and os.path.commonpath([lexical, str(self.root)]) != str(self.root):
            raise self.doc.error(
                node, key, f"{text!r} is outside the directory of modelpack.yaml",
                hint="everything shipped in the bundle must live next to modelpack.yaml",
            )  # fmt: skip
        path = Path(lexical)
        try:
            is_dir = path.is_dir()
            exists = is_dir or path.is_file()
        except (OSError, ValueError):
            exists = is_dir = False
        if not exists:
            raise self.doc.error(node, key, f"{text!r} does not exist", hint=f"looked for {path}")
        if kind == "file" and is_dir:
            raise self.doc.error(node, key, f"{text!r} is a directory, expected a file")
        return path, text

    def paths(self, node: yaml.Node | None, key: str, *, inside: bool) -> list[Path]:
        if node is None:
            return []
        out: list[Path] = []
        for i, item in enumerate(self.doc.sequence(node, key)):
            path, text = self.path(item, f"{key}[{i}]", inside=inside)
            if path in out:
                raise self.doc.error(item, f"{key}[{i}]", f"{text!r} is listed twice")
            out.append(path)
        return out

    # --- sections -------------------------------------------------------------------------------------

    def name(self, node: yaml.Node) -> str:
        name = self.doc.string(node, "name")
        if not _NAME.match(name) or len(name) > 128:
            fixed = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-") or "my-model"
            raise self.doc.error(
                node, "name", f"{name!r} is not a valid OCI repository name",
                hint=f"lowercase letters and digits joined by '.', '_' or '-', e.g. {fixed!r}",
            )  # fmt: skip
        return name

    def model(self, node: yaml.Node) -> ModelSpec:
        d = self.doc
        m = d.mapping(node, "model", ("paths", "format", "framework"), required=("paths", "format"))
        fmt = d.choice(m["format"], "model.format", MODEL_FORMATS)
        paths = self.paths(m["paths"], "model.paths", inside=True)
        found = files.expand(paths, self.root)
        if not paths or not found:
            raise d.error(m["paths"], "model.paths", "the model has no files", hint="list the weights files")
        if all(f.stat().st_size == 0 for f in found):
            raise d.error(m["paths"], "model.paths", "every model file is empty (0 bytes)",
                          hint="run training first, or point at the real weights")  # fmt: skip
        framework = d.optional_string(m.get("framework"), "model.framework")
        return ModelSpec(tuple(paths), fmt, framework, found)

    def code(self, node: yaml.Node | None, fmt: str) -> CodeSpec:
        d = self.doc
        if node is None or is_null(node):
            if fmt != "onnx":
                raise d.error(node, "code", f"is required for model.format {fmt}",
                              hint="the built-in handler serves only onnx; add code: {paths: [handler.py], "
                              "handler: 'handler:Model'}")  # fmt: skip
            return CodeSpec((), "onnx", ())
        c = d.mapping(node, "code", ("paths", "handler"), required=("handler",))
        handler = d.string(c["handler"], "code.handler")
        if handler not in BUILTIN_HANDLERS and not _HANDLER.match(handler):
            raise d.error(
                c["handler"],
                "code.handler",
                f"{handler!r} is neither a built-in nor module:Class",
                hint=did_you_mean(handler, BUILTIN_HANDLERS) or "e.g. 'onnx' or 'handler:Model'",
            )
        if handler == "onnx" and fmt != "onnx":
            raise d.error(c["handler"], "code.handler", f"the onnx handler cannot serve model.format {fmt}",
                          hint="write a handler class and name it as module:Class")  # fmt: skip
        paths = self.paths(c.get("paths"), "code.paths", inside=True)
        found = files.expand(paths, self.root)
        if handler not in BUILTIN_HANDLERS:
            self.check_module(handler, paths, c["handler"])
        return CodeSpec(tuple(paths), handler, found)

    def check_module(self, handler: str, paths: list[Path], node: yaml.Node) -> None:
        module = handler.split(":", 1)[0]
        rel = Path(*module.split("."))
        candidates = [self.root / rel.with_suffix(".py"), self.root / rel / "__init__.py"]
        for candidate in candidates:
            if candidate.is_file() and any(candidate == p or p in candidate.parents for p in paths):
                return
        names = " or ".join(c.relative_to(self.root).as_posix() for c in candidates)
        raise self.doc.error(node, "code.handler", f"module {module!r} is not in code.paths",
                             hint=f"add {names} to code.paths")  # fmt: skip

    def dependencies(self, node: yaml.Node) -> DependenciesSpec:
        d = self.doc
        m = d.mapping(node, "dependencies", ("lockfile", "python"), required=("lockfile",))
        lockfile, _ = self.path(m["lockfile"], "dependencies.lockfile", inside=True, kind="file")
        python = DEFAULT_PYTHON
        if "python" in m:
            python = d.string(m["python"], "dependencies.python")
            if not _PYTHON.match(python):
                raise d.error(m["python"], "dependencies.python", f"{python!r} is not a Python version",
                              hint="write major.minor in quotes, e.g. '3.11'")  # fmt: skip
        return DependenciesSpec(lockfile, python)

    def datasets(self, node: yaml.Node | None) -> tuple[DatasetSpec, ...]:
        d = self.doc
        out: list[DatasetSpec] = []
        for i, item in enumerate(d.sequence(node, "datasets", scalar_ok=False) if node is not None else []):
            key = f"datasets[{i}]"
            m = d.mapping(item, key, ("name", "path", "uri", "package"), required=("name",))
            name = d.string(m["name"], f"{key}.name")
            if any(ds.name == name for ds in out):
                raise d.error(m["name"], f"{key}.name", f"{name!r} is declared twice")
            if "path" not in m and "uri" not in m:
                raise d.error(item, key, "needs a path, a uri, or both")
            path = text = None
            if "path" in m:
                path, text = self.path(m["path"], f"{key}.path", inside=False)
            uri = d.optional_string(m.get("uri"), f"{key}.uri")
            package = d.boolean(m["package"], f"{key}.package") if "package" in m else False
            if package and path is None:
                raise d.error(m["package"], f"{key}.package", "only a dataset with a path can be packaged")
            if package and path is not None and os.path.commonpath([path, self.root]) != str(self.root):
                raise d.error(m["path"], f"{key}.path", "a packaged dataset must live next to modelpack.yaml")
            out.append(DatasetSpec(name, path, text, uri, package))
        return tuple(out)

    def metrics(
        self, node: yaml.Node | None, datasets: tuple[DatasetSpec, ...]
    ) -> tuple[tuple[tuple[str, Metric], ...], Path | None]:
        d = self.doc
        if node is None or is_null(node):
            return (), None
        if isinstance(node, yaml.ScalarNode):  # shorthand: `metrics: metrics.json`
            m: dict[str, yaml.Node] = {"file": node}
        else:
            m = d.mapping(node, "metrics", ("file", "dataset", "values"))
        default = None
        if "dataset" in m:
            default = self.dataset_ref(m["dataset"], "metrics.dataset", datasets)
        found: dict[str, Metric] = {}
        metrics_file = None
        if "file" in m:
            metrics_file, text = self.path(m["file"], "metrics.file", inside=False, kind="file")
            found = load_metrics_file(metrics_file, dataset=default, display=self.shown(text))
        for name, metric in self.inline_metrics(m.get("values"), "metrics.values", default, datasets):
            if name in found:
                raise d.error(m["values"], f"metrics.values.{name}", "is also in the metrics file")
            found[name] = metric
        return tuple(sorted(found.items())), metrics_file

    def inline_metrics(
        self, node: yaml.Node | None, key: str, default: str | None, datasets: tuple[DatasetSpec, ...]
    ) -> list[tuple[str, Metric]]:
        d = self.doc
        if node is None or is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            raise d.error(node, key, "expected a mapping of metric names to numbers")
        out: list[tuple[str, Metric]] = []
        for k, v in node.value:
            name = d.string(k, key)
            sub = f"{key}.{name}"
            if any(n == name for n, _ in out):
                raise d.error(k, sub, "is given twice")
            keys = (
                {str(kk.value) for kk, _ in v.value if isinstance(kk, yaml.ScalarNode)}
                if isinstance(v, yaml.MappingNode)
                else set()
            )
            if "value" in keys and keys <= {"value", "dataset"}:
                mm = d.mapping(v, sub, ("value", "dataset"))
                ds = (
                    self.dataset_ref(mm["dataset"], f"{sub}.dataset", datasets)
                    if "dataset" in mm
                    else default
                )
                out.append((name, Metric(d.number(mm["value"], f"{sub}.value"), ds)))
            elif isinstance(v, yaml.MappingNode):
                out.extend((f"{name}.{n}", m) for n, m in self.inline_metrics(v, sub, default, datasets))
            else:
                value = d.number(v, sub)
                out.append((name, Metric(value, default)))
        return out

    def dataset_ref(self, node: yaml.Node, key: str, datasets: tuple[DatasetSpec, ...]) -> str:
        name = self.doc.string(node, key)
        names = [ds.name for ds in datasets]
        if name not in names:
            hint = did_you_mean(name, names) or (
                f"declared datasets: {', '.join(names)}" if names else "declare it under datasets:"
            )
            raise self.doc.error(node, key, f"dataset {name!r} is not declared under datasets", hint=hint)
        return name

    def params(self, node: yaml.Node | None) -> tuple[tuple[tuple[str, ParamValue], ...], Path | None]:
        d = self.doc
        if node is None or is_null(node):
            return (), None
        if isinstance(node, yaml.ScalarNode):  # `params: params.yaml`
            path, text = self.path(node, "params", inside=False, kind="file")
            return tuple(sorted(load_params_file(path, display=self.shown(text)).items())), path
        if not isinstance(node, yaml.MappingNode):
            raise d.error(node, "params", "expected a file name or a mapping of names to values")
        values = flatten_params(located(node, d.display), where=d.display)
        return tuple(sorted(values.items())), None

    def tests(self, node: yaml.Node | None) -> TestsSpec:
        d = self.doc
        if node is None or is_null(node):
            return TestsSpec()
        m = d.mapping(node, "tests", ("cases", "gates", "latency_requests"))
        cases = None
        if "cases" in m:
            cases, text = self.path(m["cases"], "tests.cases", inside=True, kind="file")
            load_cases(cases, display=self.shown(text))
        gates: list[Gate] = []
        for text, item in d.strings(m.get("gates"), "tests.gates"):
            try:
                gates.append(parse_gate(text))
            except InputError as e:
                raise d.error(item, f"tests.gates[{len(gates)}]", e.message, hint=e.hint) from None
        requests = DEFAULT_LATENCY_REQUESTS
        if "latency_requests" in m:
            requests = d.integer(m["latency_requests"], "tests.latency_requests", 1, 100_000)
        return TestsSpec(cases, tuple(gates), requests)

    def serving(self, node: yaml.Node | None, python: str) -> ServingSpec:
        d = self.doc
        base = f"python:{python}-slim"
        if node is None or is_null(node):
            return ServingSpec(base_image=base)
        m = d.mapping(node, "serving", ("base_image", "port", "env", "system_packages", "builder"))
        if "base_image" in m:
            base = d.string(m["base_image"], "serving.base_image")
            if any(c.isspace() for c in base):
                raise d.error(m["base_image"], "serving.base_image", f"{base!r} is not an image reference")
        port = d.integer(m["port"], "serving.port", 1, 65535) if "port" in m else DEFAULT_PORT
        env: list[tuple[str, str]] = []
        if "env" in m and not is_null(m["env"]):
            if not isinstance(m["env"], yaml.MappingNode):
                raise d.error(m["env"], "serving.env", "expected a mapping of variable names to values")
            for k, v in m["env"].value:
                name = d.string(k, "serving.env")
                if not _ENV_NAME.match(name):
                    raise d.error(k, f"serving.env.{name}", "is not a valid environment variable name")
                if name == "PORT":
                    raise d.error(k, "serving.env.PORT", "is set from serving.port", hint="set serving.port")
                env.append((name, d.string(v, f"serving.env.{name}", allow_empty=True)))
        packages = tuple(s for s, _ in d.strings(m.get("system_packages"), "serving.system_packages"))
        builder = d.choice(m["builder"], "serving.builder", BUILDERS) if "builder" in m else "daemonless"
        if packages and builder != "docker":
            raise d.error(m["system_packages"], "serving.system_packages", "needs a Docker build",
                          hint="set serving.builder: docker")  # fmt: skip
        return ServingSpec(base, port, tuple(sorted(env)), packages, builder)


__all__ = ["load_packfile", "parse_packfile"]
