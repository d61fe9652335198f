"""`modelpack copy`, `tag`, `login`, `logout` and `gc`: moving graphs between registries and layouts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import CaFileOpt, InsecureOpt, JsonOpt, PlainHttpOpt, StoreOpt, open_targets
from modelpack.errors import DigestMismatchError, UsageError

PASSWORD_WARNING = (
    "WARNING: --password puts the password in your shell history and the process list; use --password-stdin"
)


def _default_tag(src_ref: str, dest_is_layout: bool) -> str | None:
    """DST without a tag takes SRC's; a local store tag `name:version` gives a registry its version."""
    from modelpack.oci import digest

    if digest.is_digest(src_ref):
        return None
    return src_ref if dest_is_layout else src_ref.rsplit(":", 1)[-1]


@app.command()
def copy(
    source: Annotated[
        str,
        typer.Argument(metavar="SRC", help="HOST/REPO:TAG, HOST/REPO@DIGEST, oci:PATH:TAG or NAME:VERSION."),
    ],
    destination: Annotated[
        str,
        typer.Argument(
            metavar="DST", help="HOST/REPO[:TAG] or oci:PATH[:TAG]; without a TAG, SRC's is used."
        ),
    ],
    referrers: Annotated[
        bool, typer.Option("--referrers", help="Also copy what is attached (test reports, promotions).")
    ] = False,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a whole graph (index, manifests, blobs) between registries and OCI layouts; prints its digest.

    Blobs the destination has are skipped, same-registry blobs are mounted, and the tag is written last,
    so an interrupted copy leaves no tag behind and a re-run sends only what is missing.

    Examples:

      modelpack copy ghcr.io/acme/iris:1.4.0 oci:./backup

      modelpack copy oci:./backup:1.4.0 registry.internal:5000/ml/iris --referrers
    """
    from modelpack import api
    from modelpack.oci.copy import copy_graph
    from modelpack.oci.layout import LayoutStore

    with open_targets(store, ca_file, insecure, plain_http) as targets:
        src = targets.open(source, local=True)
        if src.ref is None:
            raise UsageError(f"{source!r} names no tag or digest to copy", hint=f"e.g. {source}:1.0.0")
        dst = targets.open(destination, local=False)
        dest_is_layout = isinstance(dst.target, LayoutStore)
        dest_tag = dst.ref or _default_tag(src.ref, dest_is_layout)
        if dest_tag is None and dest_is_layout:
            raise UsageError(
                f"{destination!r} needs a tag: {source!r} is pinned by digest and a layout keeps only "
                "what a tag names",
                hint=f"e.g. {destination}:1.0.0",
            )
        # Only the local store keeps serving images without their base layers (they stay in the base's
        # registry); anywhere else the graph is complete and the extra manifest reads would be wasted.
        fallbacks = api.base_sources(src.target, src.ref, targets) if src.is_local else []
        with _output.progress_bars() as progress:
            result = copy_graph(
                src.target,
                dst.target,
                src.ref,
                dest_tag,
                referrers=referrers,
                fallbacks=fallbacks,
                progress=progress,
            )
        shown = _with_tag(dst.display, dst.reference is not None and dst.ref is None, dest_tag)
    if as_json:
        _output.emit_json(
            {
                "source": src.display,
                "destination": shown,
                "digest": result.digest,
                "mediaType": result.media_type,
                "blobsCopied": result.blobs_copied,
                "blobsSkipped": result.blobs_skipped,
                "bytesCopied": result.bytes_copied,
                "manifests": result.manifests,
                "referrers": result.referrers,
            }
        )
        return
    extra = f", {result.referrers} referrers" if referrers else ""
    _output.info(
        f"copied {src.display} to {shown}: {result.blobs_copied} blobs copied "
        f"({result.bytes_copied:,} bytes), {result.blobs_skipped} already there{extra}"
    )
    typer.echo(result.digest)


def _with_tag(display: str, add: bool, tag: str | None) -> str:
    if not add:
        return display
    return f"{display}:{tag}" if tag else display


@app.command()
def tag(
    reference: Annotated[
        str, typer.Argument(metavar="REF", help="HOST/REPO:TAG, oci:PATH:TAG or NAME:VERSION.")
    ],
    new_tag: Annotated[str, typer.Argument(metavar="NEWTAG", help="The new tag, in the same repository.")],
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point NEWTAG at the manifest REFERENCE names: the same bytes, so the same digest; prints it.

    Examples:

      modelpack tag ghcr.io/acme/iris:1.4.0 prod

      modelpack tag iris:1.4.0 latest          # in the local store: iris:latest
    """
    from modelpack.oci.layout import check_tag

    if "/" in new_tag or new_tag.startswith("oci:") or "@" in new_tag:
        raise UsageError(
            f"NEWTAG {new_tag!r} is a reference, not a tag: tag works inside one repository",
            hint="pass just the tag, or use `modelpack copy` to another repository",
        )
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        resolved = targets.open(reference, local=True)
        if resolved.ref is None:
            raise UsageError(f"{reference!r} names no tag or digest", hint=f"e.g. {reference}:1.0.0")
        if resolved.reference is None:  # the local store: tags are name:version
            if ":" not in new_tag:
                new_tag = f"{resolved.ref.rsplit(':', 1)[0]}:{new_tag}"
            display = check_tag(new_tag)
        elif resolved.reference.is_layout:
            display = str(resolved.reference.with_tag(check_tag(new_tag)))
        else:
            display = str(resolved.reference.with_tag(new_tag))  # validates the registry tag grammar
        manifest = resolved.target.get_manifest(resolved.ref)
        reported = resolved.target.put_manifest(new_tag, manifest)
    if reported != manifest.digest:
        raise DigestMismatchError(
            f"{display} was stored as {reported}, not {manifest.digest}: the destination changed the bytes"
        )
    if as_json:
        _output.emit_json({"reference": display, "digest": manifest.digest, "mediaType": manifest.media_type})
        return
    _output.info(f"tagged {display}")
    typer.echo(manifest.digest)


def _registry_host(text: str) -> str:
    """`https://host:5000/`, `host:5000` -> `host:5000`; docker's v1 Hub URL -> docker.io."""
    from modelpack.registry.reference import DOCKER_HUB

    host = text.split("://", 1)[1] if "://" in text else text
    host = host.split("/", 1)[0].strip()
    if not host or any(c.isspace() for c in host):
        raise UsageError(f"{text!r} is not a registry", hint="e.g. ghcr.io or 127.0.0.1:5000")
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


@app.command()
def login(
    registry: Annotated[
        str, typer.Argument(metavar="REGISTRY", help="Registry host, e.g. ghcr.io or 127.0.0.1:5000.")
    ],
    username: Annotated[str, typer.Option("--username", "-u", help="User name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password (or token) from stdin.")
    ] = False,
    password: Annotated[
        str | None,
        typer.Option("--password", "-p", help="The password (unsafe: prefer --password-stdin)."),
    ] = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
) -> None:
    """Check credentials against a registry and save them in docker's config.json ($DOCKER_CONFIG or
    ~/.docker), so docker and modelpack share them.

    Example: echo "$TOKEN" | modelpack login ghcr.io -u acme --password-stdin
    """
    from modelpack.registry.login import login as do_login

    if password_stdin and password is not None:
        raise UsageError("--password and --password-stdin exclude each other", hint="use --password-stdin")
    if password is not None:
        _output.info(PASSWORD_WARNING)
        secret = password
    elif password_stdin:
        secret = sys.stdin.read().rstrip("\r\n")  # as docker: one trailing newline is not the password's
    else:
        raise UsageError(
            "no password given", hint=f'echo "$TOKEN" | modelpack login {registry} -u USER --password-stdin'
        )
    host = _registry_host(registry)
    path = do_login(host, username, secret, ca_file=ca_file, insecure=insecure, plain_http=plain_http)
    _output.info(f"credentials for {host} saved in {path}")
    typer.echo("Login succeeded")


@app.command()
def logout(
    registry: Annotated[
        str, typer.Argument(metavar="REGISTRY", help="Registry host, e.g. ghcr.io or 127.0.0.1:5000.")
    ],
) -> None:
    """Remove the saved credentials for a registry from docker's config.json (and its credential helper)."""
    from modelpack.registry.login import logout as do_logout

    host = _registry_host(registry)
    if do_logout(host):
        typer.echo(f"Removing login credentials for {host}")
    else:
        _output.info(f"not logged in to {host}")


@app.command()
def gc(
    store: StoreOpt = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            help="Keep unreferenced blobs younger than this: they may belong to a copy in progress.",
        ),
    ] = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """Remove blobs of the local store that no tag reaches (and leftovers of interrupted writes).

    Example: modelpack gc --json
    """
    from modelpack.oci.layout import LayoutStore, default_store_path

    if grace < 0:
        raise UsageError(f"--grace must be 0 or more seconds, not {grace:g}")
    root = Path(store) if store is not None else default_store_path()
    result = LayoutStore(root).gc(grace_seconds=grace)
    if as_json:
        _output.emit_json(
            {
                "store": str(root),
                "removedBlobs": result.removed_blobs,
                "freedBytes": result.freed_bytes,
                "removedTempFiles": result.removed_temp_files,
                "droppedEntries": result.dropped_entries,
                "keptYoung": result.kept_young,
            }
        )
        return
    typer.echo(f"removed {result.removed_blobs} blobs, freed {result.freed_bytes:,} bytes")
    notes = []
    if result.removed_temp_files:
        notes.append(f"{result.removed_temp_files} temp files of interrupted writes removed")
    if result.dropped_entries:
        notes.append(f"{result.dropped_entries} referrers of deleted releases dropped")
    if result.kept_young:
        notes.append(f"{result.kept_young} unreferenced blobs younger than {grace:g}s kept")
    for note in notes:
        _output.info(note)
