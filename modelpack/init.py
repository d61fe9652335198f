"""`modelpack init`: a project that builds, tests and ships as generated, from the templates in templates/.

`plan()` decides every file and its bytes without touching the disk; `write()` refuses to replace any
existing file unless forced, listing every conflict at once, and only then writes. The scaffolded model
is tiny and real (a linear model, as ONNX or as a numpy class with a weights.json), with a lockfile
pinned for the serving image and golden cases that pass, so `modelpack build` and `modelpack test` are
green on the first run and the user replaces pieces one at a time.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelpack import init_onnx, init_source, templates
from modelpack.errors import InputError, UsageError

HANDLERS = ("onnx", "python")
PYTHON = "3.11"  # the lockfile templates pin wheels for CPython 3.11 on linux/amd64
VERSION = "0.1.0"
DISTRIBUTION = init_source.DISTRIBUTION
HANDLER_MODULE = "handler"
HANDLER_CLASS = "Model"
WEIGHTS_FILE = "weights.json"
WORKFLOW = ".github/workflows/modelpack.yml"
ROLLBACK_WORKFLOW = ".github/workflows/modelpack-rollback.yml"
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_GH_OWNER = "${{ github.repository_owner }}"


@dataclass(frozen=True)
class PlannedFile:
    path: Path  # absolute
    content: bytes | None = None  # what to write, or
    source: Path | None = None  # the file to copy (a model can be large: never read into memory)


@dataclass(frozen=True)
class Plan:
    root: Path
    files: tuple[PlannedFile, ...]
    notes: tuple[str, ...] = ()  # what the user must do by hand, said after the files are written


@dataclass(frozen=True)
class InitResult:
    root: Path
    created: tuple[Path, ...]
    replaced: tuple[Path, ...]
    notes: tuple[str, ...]


def init(
    directory: Path,
    *,
    name: str | None = None,
    handler: str | None = None,
    model: Path | None = None,
    registry: str | None = None,
    force: bool = False,
    modelpack_from: str | None = None,
) -> InitResult:
    """Scaffold a modelpack project in `directory` (created if missing)."""
    planned = plan(
        directory, name=name, handler=handler, model=model, registry=registry, modelpack_from=modelpack_from
    )
    return write(planned, force=force)


def plan(
    directory: Path,
    *,
    name: str | None = None,
    handler: str | None = None,
    model: Path | None = None,
    registry: str | None = None,
    modelpack_from: str | None = None,
) -> Plan:
    root = Path(directory).absolute()
    if root.exists() and not root.is_dir():
        raise UsageError(f"{directory}: not a directory", hint="pass the project directory to create")
    name = _check_name(name) if name is not None else default_name(root)
    handler = handler or "onnx"
    if handler not in HANDLERS:
        raise UsageError(f"--handler {handler}: expected one of {', '.join(HANDLERS)}")
    if model is not None and handler != "onnx":
        raise UsageError(
            "--model works with --handler onnx",
            hint=f"for a python handler, put your weights next to {HANDLER_MODULE}.py and list them "
            "under model.paths",
        )
    files: list[PlannedFile] = []
    notes: list[str] = []

    def add(rel: str, text: str) -> None:
        files.append(PlannedFile(root / rel, text.encode("utf-8")))

    context: dict[str, object] = {"name": name, "version": VERSION, "python": PYTHON}
    if handler == "python":
        cases = init_onnx.linear_cases()
        spec = {"weights": [list(r) for r in init_onnx.WEIGHTS], "bias": list(init_onnx.BIAS)}
        add(WEIGHTS_FILE, json.dumps(spec, indent=2) + "\n")
        add(
            f"{HANDLER_MODULE}.py",
            templates.render(
                "handler.py.j2",
                name=name,
                class_name=HANDLER_CLASS,
                weights_file=WEIGHTS_FILE,
                input_name=init_onnx.INPUT,
                output_name=init_onnx.OUTPUT,
                n_features=len(init_onnx.WEIGHTS),
                n_outputs=len(init_onnx.BIAS),
            ),
        )
        context.update(
            description="A linear model served by a Python class (numpy only): replace it with yours.",
            model_path=WEIGHTS_FILE,
            model_format="other",
            code_paths=[f"{HANDLER_MODULE}.py"],
            handler=f"{HANDLER_MODULE}:{HANDLER_CLASS}",
            handler_file=f"{HANDLER_MODULE}.py",
        )
    else:
        model_rel, cases = _onnx_model(root, model, files)
        if cases.reason:
            notes.append(f"no golden cases: the model's {cases.reason}; write cases.json by hand")
        context.update(
            description=f"{name}, served by modelpack's built-in ONNX handler.",
            model_path=model_rel,
            model_format="onnx",
            code_paths=[],
            handler="onnx",
            handler_file=None,
        )
    if cases.cases:
        add("cases.json", templates.render("cases.json.j2", cases=cases.cases, tolerance=cases.tolerance))
    add("modelpack.yaml", templates.render("modelpack.yaml.j2", cases=bool(cases.cases), **context))
    add("requirements.lock", templates.render(f"requirements-{handler}.lock.j2", python=PYTHON))
    source = init_source.chosen(modelpack_from) if modelpack_from else init_source.running()
    notes.extend([source.note] if source.note else [])
    files.extend(_workflows(root, name, registry, source.requirement, notes))
    return Plan(root, tuple(files), tuple(notes))


def write(plan: Plan, *, force: bool = False) -> InitResult:
    """Write the planned files; without `force`, refuse (changing nothing) if any of them exists."""
    existing = [f.path for f in plan.files if f.path.exists() or f.path.is_symlink()]
    if existing and not force:
        names = ", ".join(_shown(p, plan.root) for p in existing)
        raise InputError(
            f"{plan.root}: would overwrite {names}", hint="nothing was written; pass --force to replace them"
        )
    for f in plan.files:
        if f.path.is_dir():
            raise InputError(f"{f.path}: is a directory, where modelpack init writes a file")
    for f in plan.files:
        _write_file(f)
    replaced = tuple(existing)
    created = tuple(f.path for f in plan.files if f.path not in replaced)
    return InitResult(plan.root, created, replaced, plan.notes)


def default_name(directory: Path) -> str:
    """The directory's name as a valid model name: lowercase, anything else between words a `-`."""
    words = re.findall(r"[a-z0-9]+", directory.name.lower())
    return "-".join(words) or "model"


def git_root(directory: Path) -> Path | None:
    """The work tree holding `directory` (its nearest ancestor with a .git), where workflows must go."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"--name {name!r}: not a valid model name",
            hint="lowercase letters and digits, joined by '.', '_', '__' or '-', e.g. sentiment-bert",
        )
    return name


def _onnx_model(root: Path, model: Path | None, files: list[PlannedFile]) -> tuple[str, init_onnx.CaseSet]:
    if model is None:
        files.append(PlannedFile(root / "model.onnx", init_onnx.linear_model_bytes()))
        return "model.onnx", init_onnx.linear_cases()
    source = Path(model).absolute()
    if not source.is_file():
        raise InputError(f"--model {model}: no such file")
    problem = init_onnx.check_model(source)
    if problem:
        raise InputError(f"--model {model}: {problem}", hint="pass a .onnx file, or use --handler python")
    if source.resolve().is_relative_to(root.resolve()):
        rel = source.resolve().relative_to(root.resolve()).as_posix()  # already in the project: use it there
    else:
        rel = source.name
        files.append(PlannedFile(root / rel, source=source))
    return rel, init_onnx.cases_for(source)


def _workflows(
    root: Path, name: str, registry: str | None, requirement: str, notes: list[str]
) -> list[PlannedFile]:
    repo_root = git_root(root) or root
    project_dir = root.relative_to(repo_root).as_posix() if root != repo_root else "."
    if registry is None:
        host, repository = "ghcr.io", f"ghcr.io/{_GH_OWNER}/{name}"
    else:
        host, repository = _parse_registry(registry)
        if _loopback(host):
            notes.append(
                f"--registry {registry} is a loopback address: a GitHub runner cannot reach this machine, so "
                "every push from CI would fail; give a registry the runners reach (e.g. ghcr.io/OWNER/NAME)"
            )
    context = {
        "name": name,
        "registry": host,
        "repository": repository,
        "repository_display": repository.replace(_GH_OWNER, "OWNER"),
        "ghcr": host == "ghcr.io",
        "python": PYTHON,
        "project_dir": project_dir,
        "modelpack_requirement": requirement,
        "lfs": _uses_lfs(repo_root),
    }
    return [
        PlannedFile(repo_root / rel, templates.render(tpl, **context).encode("utf-8"))
        for rel, tpl in (
            (WORKFLOW, "workflows/modelpack.yml.j2"),
            (ROLLBACK_WORKFLOW, "workflows/modelpack-rollback.yml.j2"),
        )
    ]


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    return name in ("localhost", "::1") or name.startswith("127.")


def _uses_lfs(repo_root: Path) -> bool:
    """The repository stores files with Git LFS (its .gitattributes names the lfs filter): the checkout
    must fetch them, or the build reads pointer files in place of the weights."""
    try:
        return "filter=lfs" in (repo_root / ".gitattributes").read_text(errors="replace")
    except OSError:
        return False


def _parse_registry(text: str) -> tuple[str, str]:
    from modelpack.registry.reference import parse_reference

    ref = parse_reference(text)
    if ref.is_layout or ref.tag or ref.digest:
        raise UsageError(
            f"--registry {text}: expected REGISTRY/REPOSITORY with no tag or digest",
            hint="e.g. ghcr.io/acme/sentiment; the workflow adds the version",
        )
    return ref.registry, f"{ref.registry}/{ref.repository}"


def _shown(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _write_file(f: PlannedFile) -> None:
    # Through a temporary file and a rename, so an interrupted init leaves whole files, never half ones.
    f.path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=f.path.parent, prefix=f".{f.path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            if f.content is not None:
                out.write(f.content)
            elif f.source is not None:
                with f.source.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
        os.chmod(tmp, 0o644)
        os.replace(tmp, f.path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
