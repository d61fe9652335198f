"""`modelpack login`, `logout` and `gc`: credentials in docker's config.json, and the local store's upkeep."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import Access, CaFileOpt, InsecureOpt, JsonOpt, PlainHttpOpt, StoreOpt
from modelpack.errors import UsageError

PASSWORD_WARNING = (
    "WARNING: --password puts the password in your shell history and the process list; use --password-stdin"
)
RegistryArg = Annotated[
    str, typer.Argument(metavar="REGISTRY", help="Registry host, e.g. ghcr.io or 127.0.0.1:5000.")
]


def _secret(registry: str, password: str | None, password_stdin: bool) -> str:
    if password_stdin and password is not None:
        raise UsageError("--password and --password-stdin exclude each other", hint="use --password-stdin")
    if password is not None:
        _output.info(PASSWORD_WARNING)
        return password
    if password_stdin:
        return sys.stdin.read().rstrip("\r\n")  # as docker: one trailing newline is not the password's
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True))
    raise UsageError(
        "no password given", hint=f'echo "$TOKEN" | modelpack login {registry} -u USER --password-stdin'
    )


@app.command()
def login(
    registry: RegistryArg,
    username: Annotated[str, typer.Option("--username", "-u", metavar="USER", help="User name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password (or token) from stdin.")
    ] = False,
    password: Annotated[
        str | None,
        typer.Option(
            "--password", "-p", metavar="PASSWORD", help="The password (unsafe: prefer --password-stdin)."
        ),
    ] = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
) -> None:
    """Check credentials against a registry and save them in docker's config.json ($DOCKER_CONFIG or
    ~/.docker), so docker and modelpack share them. On a terminal, without a password option, it asks.

    Examples:

      echo "$TOKEN" | modelpack login ghcr.io -u acme --password-stdin

      modelpack login 127.0.0.1:5000 -u alice          # prompts for the password
    """
    from modelpack import api

    secret = _secret(registry, password, password_stdin)
    with Access(None, ca_file, insecure, plain_http).targets() as targets:
        result = api.login(targets, registry, username, secret)
    _output.info(f"credentials for {result.registry} saved in {result.config}")
    _output.echo("Login succeeded")


@app.command()
def logout(registry: RegistryArg) -> None:
    """Remove the saved credentials for a registry from docker's config.json (and its credential helper).

    Examples:

      modelpack logout ghcr.io

      modelpack logout 127.0.0.1:5000
    """
    from modelpack import api

    result = api.logout(registry)
    if result.removed:
        return _output.echo(f"Removing login credentials for {result.registry}")
    _output.info(f"not logged in to {result.registry}")


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

    Examples:

      modelpack gc

      modelpack gc --grace 0 --json
    """
    from modelpack import api

    with Access(store=store).targets() as targets:
        result = api.gc(targets, grace=grace)
    if as_json:
        return _output.emit_json(result.to_json())
    r = result.result
    _output.echo(f"removed {_output.count(r.removed_blobs, 'blob')}, freed {r.freed_bytes:,} bytes")
    if r.removed_temp_files:
        _output.info(f"{r.removed_temp_files} temp files of interrupted writes removed")
    if r.dropped_entries:
        _output.info(f"{_output.count(r.dropped_entries, 'referrer')} of deleted releases dropped")
    if result.caches is not None and result.caches.removed:
        _output.info(
            f"{result.caches.removed} cache entries no release needs removed "
            f"({result.caches.freed_bytes:,} bytes)"
        )
    if r.kept_young:
        _output.info(f"{r.kept_young} unreferenced blobs younger than {grace:g}s kept")
