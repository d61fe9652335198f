"""The typer application object, shared by the command modules, and the global options."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from modelpack import __version__

app = typer.Typer(
    name="modelpack",
    help=(
        "Turn a trained model into a versioned, tested, deployable OCI release.\n\n"
        "Examples:\n\n"
        "  modelpack build                       # bundle + serving image into the local store\n\n"
        "  modelpack push ghcr.io/acme/sentiment:1.4.0\n\n"
        "  modelpack rollback ghcr.io/acme/sentiment prod 1.3.2"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Settings:
    """Process-wide options from the root callback. The CLI is the only reader."""

    verbose: bool = os.environ.get("MODELPACK_VERBOSE", "") not in ("", "0")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelpack {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show debug detail and tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """modelpack: models as versioned OCI releases."""
    if verbose:
        Settings.verbose = True
