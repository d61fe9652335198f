"""`modelpack ui`: the read-only portal over registries, served on this machine or exported as files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import Access, access_options


@app.command()
@access_options
def ui(
    repositories: Annotated[
        list[str],
        typer.Argument(metavar="REPO", help="Repositories: HOST/REPO, oci:PATH or a local NAME."),
    ],
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = 8765,
    host: Annotated[
        str,
        typer.Option("--host", metavar="ADDR", help="Address to listen on; beyond loopback needs --token."),
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="MODELPACK_UI_TOKEN",
            help="Require this token. Prefer the MODELPACK_UI_TOKEN variable: argv shows in ps.",
            show_default=False,
        ),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="DIR",
            help="Write the pages as a static site to DIR and exit.",
            show_default=False,
        ),
    ] = None,
    *,
    access: Access,
) -> None:
    """A read-only web portal: versions, metrics, tests, environments, lineage. Opens no browser.

    Reads the registries with your docker credentials and never shows them. Nothing is written to a
    registry; immutable content is cached under the store's cache/portal.

    Examples:

      modelpack ui ghcr.io/acme/iris ghcr.io/acme/sentiment --port 8080

      MODELPACK_UI_TOKEN="$(openssl rand -hex 16)" modelpack ui ghcr.io/acme/iris --host 0.0.0.0

      modelpack ui --export site ghcr.io/acme/iris
    """
    from modelpack import portal

    with access.targets() as targets:
        if export is not None:
            done = portal.export(targets, repositories, export)
            for page, why in done.skipped:
                _output.info(f"skipped {page}: {why}")
            skipped = f" ({_output.count(len(done.skipped), 'page')} skipped)" if done.skipped else ""
            return _output.echo(f"wrote {_output.count(done.pages, 'page')} to {export}{skipped}")
        srv = portal.open_server(targets, repositories, host=host, port=port, token=token, log=_output.info)
        _output.echo(f"modelpack ui: http://{host}:{srv.server_address[1]}/ (Ctrl-C stops)")
        sys.stdout.flush()  # the address is what a script waits for: not held in a pipe's buffer
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            srv.server_close()
