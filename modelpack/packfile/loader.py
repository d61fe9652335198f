"""modelpack.yaml -> Packfile. Reads the YAML as nodes, so every refusal names file, line and key.

The loader also checks what the file points at: named files exist, the model is not empty, metrics are
numbers, datasets exist, the handler's module is among the code paths, the cases file is valid. It does
not hash anything (that is the build's job) and never raises anything but InputError.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from modelpack.errors import InputError
from modelpack.packfile import files
from modelpack.packfile.files import Locator
from modelpack.packfile.gates import parse_gate
from modelpack.packfile.lineage import LineageReader
from modelpack.packfile.nodes import Doc, did_you_mean, is_null
from modelpack.packfile.schema import (
    BUILDERS,
    BUILTIN_HANDLERS,
    DEFAULT_LATENCY_REQUESTS,
    DEFAULT_PORT,
    DEFAULT_PYTHON,
    MODEL_FORMATS,
    CodeSpec,
    DependenciesSpec,
    Gate,
    ModelSpec,
    Packfile,
    SecuritySpec,
    ServingSpec,
    TestsSpec,
)
from modelpack.packfile.version import TAG_HINT, is_oci_tag
from modelpack.record.cases import load_cases
from modelpack.record.files import read_bounded
from modelpack.record.located import compose_yaml

TOP_KEYS = (
    "name", "version", "description", "license", "authors", "model", "code", "dependencies",
    "datasets", "metrics", "params", "docs", "tests", "serving", "security", "training",
)  # fmt: skip
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HANDLER = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_PACKFILE = 1 << 20
_PICKLE_IMPORT = re.compile(r"^(\*|[A-Za-z_]\w*(\.[A-Za-z_<>]\w*)*\.(\*|[A-Za-z_]\w*))$")


PACKFILE = "modelpack.yaml"


def find_packfile(path: Path) -> Path:
    """`path` is a project directory or a packfile itself."""
    candidate = path / PACKFILE if path.is_dir() else path
    if not candidate.is_file():
        raise InputError(
            f"no {PACKFILE} in {path}", hint="run `modelpack init` there, or pass the project directory"
        )
    return candidate


def load_packfile(path: Path | str, *, skip: Iterable[Path] = ()) -> Packfile:
    """Read and validate modelpack.yaml (or a directory holding one).

    `skip`: folders never packed wherever they sit, such as the local store the build writes into."""
    path = Path(path)
    if path.is_dir():
        path = path / PACKFILE
    display = str(path)
    hint = "run 'modelpack init' to create one"
    raw = read_bounded(path, where=display, limit=_MAX_PACKFILE, what=f"a {PACKFILE}", hint=hint)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{display}: not UTF-8 text (byte {e.start})") from None
    return parse_packfile(text, path=path, display=display, skip=skip)


def parse_packfile(
    text: str, *, path: Path, display: str | None = None, skip: Iterable[Path] = ()
) -> Packfile:
    """Validate packfile text as if it were at `path` (relative paths resolve against its directory)."""
    doc = Doc(display or str(path))
    # Normalised, so `build ../p1` from a sibling folder compares like paths with like in the inside checks.
    path = Path(os.path.abspath(path))
    node = compose_yaml(text, doc.display)
    if node is None:
        raise InputError(f"{doc.display}: is empty", hint="run 'modelpack init' for a commented template")
    try:
        return _Reader(doc, path.parent, tuple(skip)).packfile(node, path)
    except RecursionError:
        raise InputError(f"{doc.display}: nested too deeply") from None


class _Reader:
    def __init__(self, doc: Doc, root: Path, skip: tuple[Path, ...]) -> None:
        self.doc = doc
        self.root = root
        self.skip = skip
        self.loc = Locator(doc, root)
        self.lineage = LineageReader(doc, self.loc)

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
        datasets = self.lineage.datasets(top.get("datasets"))
        metrics, metrics_file = self.lineage.metrics(top.get("metrics"), datasets)
        params, params_file = self.lineage.params(top.get("params"))
        docs = tuple(self.loc.paths(top.get("docs"), "docs", inside=True))
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
            metrics_history=self.lineage.history(top.get("metrics")),
            params=params,
            params_file=params_file,
            docs=docs,
            doc_files=files.expand(docs, self.root, skip=self.skip),
            tests=self.tests(top.get("tests")),
            serving=self.serving(top.get("serving"), dependencies.python),
            security=self.security(top.get("security")),
            training_command=self.training(top.get("training")),
        )

    # --- sections -------------------------------------------------------------------------------------

    def training(self, node: yaml.Node | None) -> str | None:
        """`training: {command: ...}`: how CI makes the weights (the generated workflow runs it before the
        build); modelpack build itself runs nothing and reads the files the command wrote."""
        if node is None or is_null(node):
            return None
        m = self.doc.mapping(node, "training", ("command",), required=("command",))
        return self.doc.string(m["command"], "training.command").strip()  # Doc.string refuses an empty one

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
        paths = self.loc.paths(m["paths"], "model.paths", inside=True)
        found = files.expand(paths, self.root, skip=self.skip)
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
        paths = self.loc.paths(c.get("paths"), "code.paths", inside=True)
        found = files.expand(paths, self.root, skip=self.skip)
        if handler not in BUILTIN_HANDLERS:
            self.check_module(handler, paths, c["handler"])
        return CodeSpec(tuple(paths), handler, found)

    def check_module(self, handler: str, paths: list[Path], node: yaml.Node) -> None:
        module = handler.split(":", 1)[0]
        rel = Path(*module.split("."))
        candidates = [self.root / rel.with_suffix(".py"), self.root / rel / "__init__.py"]
        for candidate in candidates:
            if candidate.is_file() and any(candidate == p or p in candidate.parents for p in paths):
                self.check_class(handler, candidate, node)
                return
        names = " or ".join(c.relative_to(self.root).as_posix() for c in candidates)
        raise self.doc.error(node, "code.handler", f"module {module!r} is not in code.paths",
                             hint=f"add {names} to code.paths")  # fmt: skip

    def check_class(self, handler: str, module_file: Path, node: yaml.Node) -> None:
        """The class a handler names is defined (or imported) at the top of its module: read, never run,
        so `handler:Modle` is found at build and not in the container."""
        cls = handler.split(":", 1)[1]
        shown = module_file.relative_to(self.root).as_posix()
        try:
            tree = ast.parse(module_file.read_bytes(), filename=shown)
        except (SyntaxError, ValueError) as e:
            line = getattr(e, "lineno", None)
            raise self.doc.error(node, "code.handler", f"{shown}{f' line {line}' if line else ''} does not "
                                 f"parse as Python: {getattr(e, 'msg', e)}") from None  # fmt: skip
        names = _top_level_names(tree)
        if cls in names or "__getattr__" in names or "*" in names:
            return
        classes = sorted(n.name for n in tree.body if isinstance(n, ast.ClassDef))
        hint = did_you_mean(cls, classes) or f"classes there: {', '.join(classes) or 'none'}"
        raise self.doc.error(node, "code.handler", f"{shown} defines no {cls!r}", hint=hint)

    def dependencies(self, node: yaml.Node) -> DependenciesSpec:
        d = self.doc
        m = d.mapping(node, "dependencies", ("lockfile", "python"), required=("lockfile",))
        lockfile, _ = self.loc.path(m["lockfile"], "dependencies.lockfile", inside=True, kind="file")
        python = DEFAULT_PYTHON
        if "python" in m:
            python = d.string(m["python"], "dependencies.python")
            if not _PYTHON.match(python):
                raise d.error(m["python"], "dependencies.python", f"{python!r} is not a Python version",
                              hint="write major.minor in quotes, e.g. '3.11'")  # fmt: skip
        return DependenciesSpec(lockfile, python)

    def tests(self, node: yaml.Node | None) -> TestsSpec:
        d = self.doc
        if node is None or is_null(node):
            return TestsSpec()
        m = d.mapping(node, "tests", ("cases", "gates", "latency_requests"))
        cases = None
        if "cases" in m:
            cases, text = self.loc.path(m["cases"], "tests.cases", inside=True, kind="file")
            load_cases(cases, display=self.loc.shown(text))
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

    def security(self, node: yaml.Node | None) -> SecuritySpec:
        d = self.doc
        if node is None or is_null(node):
            return SecuritySpec()
        m = d.mapping(node, "security", ("allow_pickle_imports",))
        key = "security.allow_pickle_imports"
        allow = []
        for i, (text, item) in enumerate(d.strings(m.get("allow_pickle_imports"), key)):
            if not _PICKLE_IMPORT.match(text):
                raise d.error(item, f"{key}[{i}]", f"{text!r} is not module.name",
                              hint="e.g. 'posix.system', 'mylib.*' or '*'")  # fmt: skip
            allow.append(text)
        return SecuritySpec(tuple(allow))


__all__ = ["load_packfile", "parse_packfile"]


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (classes, functions, assignments, imports)."""
    out: set[str] = set()
    for n in tree.body:
        if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            out.add(n.name)
        elif isinstance(n, ast.Assign | ast.AnnAssign):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            out.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(n, ast.Import | ast.ImportFrom):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
    return out
