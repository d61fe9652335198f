"""The typer application object, shared by the command modules, and the global options."""

from __future__ import annotations

import os
import re
from typing import Annotated

import typer
import typer._click.formatting as click_formatting  # typer's own copy of click (typer >= 0.29)
import typer.core

from modelpack import __version__
from modelpack.cli import _coerce


def _usage_name(self: typer.core.TyperArgument) -> str:
    name = self.display_name_raw
    return (name if self.required else f"[{name}]".replace("[[", "[").replace("]]", "]")) + (
        "..." if self.nargs != 1 else ""
    )


# typer 0.29 shows a required argument as `{NAME}` in usage lines and its Python type (`NAME <str>`) in
# the argument list; modelpack's help reads like docker's and git's: `NAME`, `[NAME]`, no types (every
# argument and option names its metavar). tests/test_cli.py checks the usage lines, so a typer change
# that breaks this fails loudly.
typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]
typer.core.TyperArgument.display_type = lambda self, ctx: ""  # type: ignore[method-assign]
_coerce.install()  # plain values without importing pydantic (typer >= 0.29): see _coerce.py

# Help text is rewrapped to the terminal, and an example command cut at a hyphen (`dataset=iris-` /
# `test-v3`) can no longer be copied. A paragraph that is a command is marked as click's "\b" (keep
# as written) before wrapping; prose still wraps. tests/test_cli.py checks every command's help.
_EXAMPLE = re.compile(r"(?m)(?:^|(?<=\n\n))([ \t]*)(modelpack |docker |python )")
_wrap_text = click_formatting.wrap_text


def _keep_examples(text: str, *args: object, **kwargs: object) -> str:
    if kwargs.get("preserve_paragraphs"):
        text = _EXAMPLE.sub(lambda m: f"{m.group(1)}\b\n{m.group(2)}", text)
    return _wrap_text(text, *args, **kwargs)  # type: ignore[arg-type]


click_formatting.wrap_text = _keep_examples

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
    quiet: bool = False  # -q: status lines are not printed; stdout keeps only the data (the digest)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelpack {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show debug detail and tracebacks on errors.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the data (a digest, a list), no status lines.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """modelpack: models as versioned OCI releases."""
    if verbose:
        Settings.verbose = True
    if quiet:
        Settings.quiet = True
