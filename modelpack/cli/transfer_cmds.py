"""`modelpack push`, `pull`, `copy`, `tag` and `unpack`: releases between the store, layouts, registries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, LocalOpt, access_options

if TYPE_CHECKING:
    from modelpack.api._transfer import TransferResult


def _done(verb: str, result: TransferResult, as_json: bool) -> None:
    if as_json:
        return _output.emit_json(result.to_json())
    c = result.copy
    for note in result.notes:
        _output.info(note)
    extra = f", {_output.count(c.referrers, 'referrer')}" if c.referrers else ""
    _output.info(
        f"{verb} {result.source} to {result.destination}: {_output.count(c.blobs_copied, 'blob')} copied "
        f"({c.bytes_copied:,} bytes), {c.blobs_skipped} already there{extra}"
    )
    _output.echo(c.digest)


@app.command()
@access_options
def push(
    destination: Annotated[
        str, typer.Argument(metavar="DEST", help="Where to: HOST/REPO[:VERSION] or oci:PATH[:VERSION].")
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="NAME:VERSION",
            help="The release to push (default: the project's release of DEST's version).",
            show_default=False,
        ),
    ] = None,
    project: Annotated[
        Path, typer.Option("--project", metavar="DIR", help="Project directory for the default --from.")
    ] = Path(),
    force: Annotated[
        bool, typer.Option("--force", help="Replace a version tag that names another release (recorded).")
    ] = False,
    any_version: Annotated[
        bool, typer.Option("--any-version", help="Allow a tag that differs from the release's version.")
    ] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Push a built release (index, image, bundle, referrers) to a registry; prints the index digest.

    DEST's tag is a version and names exactly the release of that version: without --from, the project's
    release of that version is pushed (refused when it is not built); a version tag that already names
    another release is refused unless --force. Without a tag the release's own version is used. Blobs the
    registry has are skipped, base layers are mounted or streamed, large blobs upload in resumable chunks.

    Examples:

      modelpack build --version 1.4.0 && modelpack push ghcr.io/acme/sentiment:1.4.0

      modelpack push 127.0.0.1:5000/acme/iris --from iris-onnx:1.0.0
    """
    from modelpack import api

    with access.targets() as targets, _output.progress_bars() as progress:
        result = api.push(
            targets,
            destination,
            source=source,
            project=project,
            force=force,
            any_version=any_version,
            progress=progress,
        )
    _done("pushed", result, as_json)


@app.command()
@access_options
def pull(
    reference: Annotated[str, typer.Argument(metavar="REF", help="HOST/REPO:TAG or oci:PATH:TAG.")],
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", metavar="NAME:TAG", help="Also store it under this local name."),
    ] = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Copy a release (index, image and bundle) into the local store, under the name it has there, so
    `--local` finds it with no network.

    Examples:

      modelpack pull ghcr.io/acme/iris:1.4.0 && modelpack inspect ghcr.io/acme/iris:1.4.0 --local

      modelpack pull ghcr.io/acme/iris:1.4.0 --tag iris:1.4.0
    """
    from modelpack import api

    with access.targets() as targets, _output.progress_bars() as progress:
        result = api.pull(targets, reference, also=tag or (), progress=progress)
    if not as_json:
        _output.info(f"stored as {', '.join(result.tags)}")
    _done("pulled", result, as_json)


@app.command()
@access_options
def copy(
    source: Annotated[
        str,
        typer.Argument(metavar="SRC", help="HOST/REPO:TAG, HOST/REPO@DIGEST, oci:PATH:TAG or NAME:VERSION."),
    ],
    destination: Annotated[
        str,
        typer.Argument(
            metavar="DST", help="HOST/REPO[:TAG], oci:PATH[:TAG] or NAME[:TAG]; default SRC's tag."
        ),
    ],
    referrers: Annotated[
        bool, typer.Option("--referrers", help="Also copy what is attached (test reports, promotions).")
    ] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Copy a whole graph (index, manifests, blobs) between registries, layouts and the local store.

    Blobs the destination has are skipped, same-registry blobs are mounted, and the tag is written last,
    so an interrupted copy leaves no tag behind and a re-run sends only what is missing.

    Examples:

      modelpack copy ghcr.io/acme/iris:1.4.0 oci:./backup

      modelpack copy oci:./backup:1.4.0 registry.internal:5000/ml/iris --referrers
    """
    from modelpack import api

    with access.targets() as targets, _output.progress_bars() as progress:
        result = api.copy(targets, source, destination, referrers=referrers, progress=progress)
    _done("copied", result, as_json)


@app.command()
@access_options
def tag(
    reference: Annotated[
        str, typer.Argument(metavar="REF", help="HOST/REPO:TAG, oci:PATH:TAG or NAME:VERSION.")
    ],
    new_tag: Annotated[str, typer.Argument(metavar="NEWTAG", help="The new tag, in the same repository.")],
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Point NEWTAG at the manifest REF names: the same bytes, so the same digest; prints it. Environment
    tags (those with promotion history) move only through promote and rollback.

    Examples:

      modelpack tag ghcr.io/acme/iris:1.4.0 stable

      modelpack tag iris:1.4.0 latest          # in the local store: iris:latest
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.tag(targets, reference, new_tag)
    if as_json:
        return _output.emit_json(result.to_json())
    _output.info(f"tagged {result.reference}")
    _output.echo(result.digest)


@app.command()
@access_options
def unpack(
    reference: Annotated[
        str, typer.Argument(metavar="REF", help="A release: NAME:VERSION, HOST/REPO:TAG or oci:PATH:TAG.")
    ],
    dest: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to unpack into (created if missing).")],
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="KINDS",
            help="Comma-separated kinds: model,code,datasets,docs (default: all).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Write a release's files into DIR (models/, code/, docs/, datasets/), every digest verified.

    Examples:

      modelpack unpack ghcr.io/acme/iris:1.4.0 ./iris --filter model,code

      modelpack unpack iris:1.4.0 ./iris --force
    """
    from modelpack import api

    _output.said_local(local)
    from modelpack.unpack import parse_filter

    kinds = parse_filter(filter_)
    with access.targets() as targets, _output.progress_bars() as progress:
        result = api.unpack(
            targets, reference, dest, kinds=kinds, force=force, local=local, progress=progress
        )
    if as_json:
        return _output.emit_json(result.to_json())
    _output.info(
        f"unpacked {reference}: {_output.count(len(result.files), 'file')}, {result.size:,} bytes "
        f"into {result.dest}"
    )
