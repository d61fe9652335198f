"""`modelpack init`: scaffold a project that builds and tests green as generated."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import JsonOpt


@app.command()
def init(
    directory: Annotated[
        Path,
        typer.Argument(metavar="[DIR]", help="Project directory (created if missing).", show_default=False),
    ] = Path(),
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="Model name (default: the directory's name).", show_default=False
        ),
    ] = None,
    handler: Annotated[
        str,
        typer.Option(
            "--handler",
            metavar="HANDLER",
            help="onnx (built-in handler) or python (a class with load/predict).",
        ),
    ] = "onnx",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            metavar="FILE",
            help="An ONNX model to copy in (default: a tiny generated one).",
            show_default=False,
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            metavar="HOST/REPO",
            help="Where CI pushes releases, REGISTRY/REPO (default: ghcr.io/<GitHub owner>/<name>).",
            show_default=False,
        ),
    ] = None,
    modelpack_from: Annotated[
        str | None,
        typer.Option(
            "--modelpack-from",
            metavar="SPEC",
            help="What CI installs: a version, git+URL@COMMIT or a wheel URL (default: where this one came "
            "from).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace files that already exist.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create modelpack.yaml (commented), a model and handler, golden cases, a pinned lockfile and the
    GitHub workflows (build and test on pull requests; push and promote staging on main; promote prod
    on a release; a manual rollback). Refuses to replace existing files unless --force.

    Examples:

      modelpack init sentiment --handler python

      modelpack init . --model model.onnx --registry ghcr.io/acme/sentiment

      modelpack init . --modelpack-from git+https://github.com/acme/modelpack@1a2b3c4
    """
    from modelpack import api

    result = api.init(
        directory,
        name=name,
        handler=handler,
        model=model,
        registry=registry,
        force=force,
        modelpack_from=modelpack_from,
    )
    if as_json:
        return _output.emit_json(result.to_json())
    for path in sorted([*result.created, *result.replaced]):
        _output.echo(f"{'replaced' if path in result.replaced else 'created'} {_shown(path)}")
    for note in result.notes:
        _output.info(f"note: {note}")
    where = _shown(result.root)
    cd = "" if where == "." else f"cd {where} && "
    _output.info(f"next: {cd}modelpack build --no-image   # then modelpack build, modelpack push, ...")


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
