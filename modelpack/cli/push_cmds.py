"""`modelpack push`: a release from the local store to any registry or layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import CaFileOpt, InsecureOpt, JsonOpt, PlainHttpOpt, StoreOpt, open_targets
from modelpack.errors import UsageError


def _default_source(project: Path) -> str:
    from modelpack import api  # heavy: imported only by the command that runs
    from modelpack.packfile import load_packfile
    from modelpack.packfile.version import resolve_version

    if not (project / api.PACKFILE).is_file() and not project.is_file():
        raise UsageError(
            f"nothing to push: no --from, and no {api.PACKFILE} in {project}",
            hint="pass --from NAME:VERSION (see `modelpack list`) or --project DIR",
        )
    pf = load_packfile(api.find_packfile(project))
    return f"{pf.name}:{resolve_version(pf.version, None, pf.root, packfile_name=pf.path.name)}"


@app.command()
def push(
    destination: Annotated[str, typer.Argument(help="Where to: HOST/REPO[:TAG] or oci:PATH[:TAG].")],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Local release NAME:VERSION (default: the project in the current directory).",
            show_default=False,
        ),
    ] = None,
    project: Annotated[
        Path, typer.Option("--project", help="Project directory for the default --from.")
    ] = Path(),
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Push a built release (index, image, bundle, referrers) to a registry; prints the index digest.

    Blobs the registry already has are skipped, base layers are mounted or streamed from the base's
    registry, large blobs upload in resumable chunks. Without a TAG the release's version is used.

    Examples:

      modelpack push ghcr.io/acme/sentiment:1.4.0

      modelpack push 127.0.0.1:5000/acme/iris --from iris-onnx:1.0.0
    """
    src = source or _default_source(project)
    if not src:
        raise UsageError("nothing to push: pass --from NAME:VERSION")
    from modelpack import api

    with open_targets(store, ca_file, insecure, plain_http) as targets, _output.progress_bars() as progress:
        result, pushed = api.push(targets, src, destination, progress=progress)
    if as_json:
        _output.emit_json(
            {
                "reference": pushed,
                "digest": result.digest,
                "mediaType": result.media_type,
                "blobsUploaded": result.blobs_copied,
                "blobsSkipped": result.blobs_skipped,
                "bytesUploaded": result.bytes_copied,
            }
        )
        return
    _output.info(
        f"pushed {pushed}: {result.blobs_copied} blobs uploaded ({result.bytes_copied:,} bytes), "
        f"{result.blobs_skipped} already there"
    )
    typer.echo(result.digest)
