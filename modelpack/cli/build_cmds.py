"""`modelpack build`: a project into the local store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output, _render
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, access_options, key_password


@app.command()
@access_options
def build(
    project: Annotated[
        Path, typer.Argument(metavar="[DIR]", help="Project directory (with modelpack.yaml) or the file.")
    ] = Path(),
    version: Annotated[
        str | None, typer.Option("--version", metavar="VERSION", help="Release version (an OCI tag).")
    ] = None,
    image: Annotated[
        bool, typer.Option("--image/--no-image", help="Also build the serving image and the release index.")
    ] = True,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            metavar="IMAGE",
            help="Base image reference (else $MODELPACK_BASE_IMAGE, else serving.base_image).",
            show_default=False,
        ),
    ] = None,
    builder: Annotated[
        str | None,
        typer.Option(
            "--builder",
            metavar="BUILDER",
            help="Serving image builder: daemonless or docker (else serving.builder, else daemonless).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="PATH",
            help="Sign the release's SLSA provenance with this private key: a file, env://NAME or - (stdin).",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            metavar="RUN",
            help="Build from an experiment run (REPO:run-<id>): its checkpoint is the weights, its params, "
            "metrics, curves and datasets the record's; the record links the run.",
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", metavar="NAME", help="With --run: this checkpoint (default: the last)."),
    ] = None,
    allow_version_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-version-mismatch",
            help="Build although the model was made with another scikit-learn (or, with --run, framework) "
            "version than the lock installs, or needs a newer ONNX opset than the locked onnxruntime runs; "
            "recorded in the release.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Build the release into the local store, tagged NAME:VERSION: the bundle (weights, lockfile,
    code, record as a CNCF ModelPack artifact), the serving image, and the index over both. The index
    gets its SLSA provenance (signed with --key) and CycloneDX SBOM attached as referrers.

    Examples:

      modelpack build examples/iris-onnx --version 1.0.1

      modelpack build --base 127.0.0.1:5000/base/python:3.11

      modelpack build --no-image        # bundle only: no base image needed

      modelpack build --builder docker  # a Docker engine builds it (serving.system_packages)

      modelpack build --key env://SIGNING_KEY  # signed provenance (CI: the key from a secret)

      modelpack build --run 127.0.0.1:5000/acme/iris-runs:run-20261206T101500-1a2b3c4d  # weights from a run

    The Docker builder runs with no network unless serving.system_packages needs apt-get; then the
    engine's default network, or $MODELPACK_DOCKER_NETWORK (e.g. host) when it has no default bridge.
    """
    from modelpack import api  # heavy: imported only by the command that runs

    with access.targets() as targets:
        result = api.build(
            targets,
            project,
            version=version,
            image=image,
            base=base,
            builder=builder,
            key=key,
            password=key_password(key) if key else None,
            log=_output.info,  # the engine's build output, as it comes (escaped, never markup)
            run=run,
            checkpoint=checkpoint,
            allow_version_mismatch=allow_version_mismatch,
        )
    for warning in result.bundle.warnings:  # on stderr in both modes: stdout stays the digest or the JSON
        _output.info(f"warning: {warning}")
    if as_json:
        return _output.emit_json(result.to_json())
    _render.built(result)
