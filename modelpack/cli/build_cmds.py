"""`modelpack build` and `modelpack list`: the local side of a release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import CaFileOpt, InsecureOpt, JsonOpt, PlainHttpOpt, StoreOpt, open_targets
from modelpack.oci.layout import LayoutStore, default_store_path


def open_store(store: Path | None) -> LayoutStore:
    return LayoutStore(store or default_store_path())


def _say(line: str) -> None:
    """A line on stderr as written: paths and engine output may hold what rich would read as markup."""
    _output.err.print(line, markup=False, highlight=False)


@app.command()
def build(
    project: Annotated[
        Path, typer.Argument(help="Project directory (with modelpack.yaml) or the file.")
    ] = Path(),
    version: Annotated[str | None, typer.Option("--version", help="Release version (an OCI tag).")] = None,
    image: Annotated[
        bool, typer.Option("--image/--no-image", help="Also build the serving image and the release index.")
    ] = True,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base image reference (else $MODELPACK_BASE_IMAGE, else serving.base_image).",
            show_default=False,
        ),
    ] = None,
    builder: Annotated[
        str | None,
        typer.Option(
            "--builder",
            help="Serving image builder: daemonless or docker (else serving.builder, else daemonless).",
            show_default=False,
        ),
    ] = None,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the release into the local store, tagged NAME:VERSION: the bundle (weights, lockfile,
    code, record as a CNCF ModelPack artifact), the serving image, and the index over both.

    Examples:

      modelpack build examples/iris-onnx --version 1.0.1

      modelpack build --base 127.0.0.1:5000/base/python:3.11

      modelpack build --no-image        # bundle only: no base image needed

      modelpack build --builder docker  # a Docker engine builds it (serving.system_packages)

    The Docker builder runs with no network unless serving.system_packages needs apt-get; then the
    engine's default network, or $MODELPACK_DOCKER_NETWORK (e.g. host) when it has no default bridge.
    """
    from modelpack import api  # heavy: imported only by the command that runs

    with open_targets(store, ca_file, insecure, plain_http) as targets:
        result = api.build(
            project,
            targets.store,
            version=version,
            image=image,
            base=base,
            targets=targets,
            builder=builder,
            log=_say,  # the engine's build output, as it comes
        )
    bundle = result.bundle
    for warning in bundle.warnings:  # on stderr in both modes: stdout stays the digest or the JSON
        _say(f"warning: {warning}")
    if as_json:
        out: dict[str, object] = {
            "name": bundle.name,
            "version": bundle.version,
            "tag": result.tag,
            "digest": result.digest,
            "created": {"time": bundle.record.created, "from": bundle.created_from},
            "warnings": list(bundle.warnings),
            "bundle": {
                "manifest": bundle.manifest.to_json(),
                "config": bundle.config.to_json(),
                "layers": [d.to_json() for d in bundle.layers],
            },
        }
        if result.image is not None and result.index is not None:
            out["index"] = result.index.to_json()
            out["image"] = {
                "manifest": result.image.manifest.to_json(),
                "config": result.image.config.to_json(),
                "layers": [d.to_json() for d in result.image.layers],
                "base": {"name": result.image.base.name, "digest": result.image.base.digest},
            }
        _output.emit_json(out)
        return
    size = sum(d.size for d in bundle.layers)
    what = "bundle + serving image" if result.image else "bundle"
    _output.info(f"built {result.tag} ({what}; bundle {len(bundle.layers)} layers, {size:,} bytes)")
    _say(f"created {bundle.record.created} from {bundle.created_from}")
    typer.echo(result.digest)


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
