"""`modelpack build` and `modelpack list`: the local side of a release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack import api
from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.oci.layout import LayoutStore, default_store_path

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Local store (an OCI layout directory). Default: $MODELPACK_STORE or "
        "~/.local/share/modelpack/store.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def open_store(store: Path | None) -> LayoutStore:
    return LayoutStore(store or default_store_path())


@app.command()
def build(
    project: Annotated[
        Path, typer.Argument(help="Project directory (with modelpack.yaml) or the file.")
    ] = Path(),
    version: Annotated[str | None, typer.Option("--version", help="Release version (an OCI tag).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bundle weights, lockfile and code into the local store, tagged NAME:VERSION.

    Example: modelpack build examples/iris-onnx --version 1.0.1
    """
    result = api.build(project, open_store(store), version=version)
    if as_json:
        _output.emit_json(
            {
                "name": result.name,
                "version": result.version,
                "tag": result.tag,
                "manifest": result.manifest.to_json(),
                "config": result.config.to_json(),
                "layers": [d.to_json() for d in result.layers],
            }
        )
        return
    size = sum(d.size for d in result.layers)
    _output.info(f"built {result.tag}: {len(result.layers)} layers, {size:,} bytes")
    typer.echo(result.manifest.digest)


@app.command("list")
def list_cmd(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List the releases in the local store.

    Example: modelpack list --json
    """
    st = open_store(store)
    rows = []
    for entry in st.read_index().manifests:
        tag = entry.annotations.get("org.opencontainers.image.ref.name")
        if tag:
            rows.append(
                {
                    "tag": tag,
                    "digest": entry.digest,
                    "mediaType": entry.media_type,
                    "artifactType": entry.artifact_type,
                }
            )
    rows.sort(key=lambda r: str(r["tag"]))
    if as_json:
        _output.emit_json(rows)
        return
    _output.table(
        ["TAG", "DIGEST", "KIND"],
        [(r["tag"], str(r["digest"])[:19], "bundle" if r["artifactType"] else "index") for r in rows],
    )
