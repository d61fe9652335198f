"""Command line: parse, call one library function, render. The one error boundary lives here."""

from __future__ import annotations

import errno
import sys

import typer
from typer._click.exceptions import UsageError as ClickUsageError  # typer vendors click
from typer.exceptions import TyperException

from modelpack.cli import _commands
from modelpack.cli._app import Settings, app
from modelpack.errors import ModelpackError
from modelpack.text import clean

__all__ = ["main"]


def _err(message: str) -> None:
    sys.stderr.write(f"error: {clean(message)}\n")  # messages quote registry content: escape it
    sys.stderr.flush()


def _debug_log() -> None:
    """--verbose: the library's debug log (request method, path and status; never headers) on stderr."""
    import logging  # here, not at the top: a command without --verbose imports it only if its code logs

    logger = logging.getLogger("modelpack")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _traceback() -> None:
    import traceback

    traceback.print_exc()


# Global flags, taken from anywhere on the line (`modelpack push -v ...` as well as `modelpack -v push`).
_VERBOSE = ("-v", "--verbose")
_QUIET = ("-q", "--quiet")


def _globals(args: list[str]) -> list[str]:
    if any(a in _VERBOSE for a in args):
        Settings.verbose = True
    if any(a in _QUIET for a in args):
        Settings.quiet = True
    if "--" in args:
        cut = args.index("--")
        return [a for a in args[:cut] if a not in _VERBOSE + _QUIET] + args[cut:]
    return [a for a in args if a not in _VERBOSE + _QUIET]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `modelpack` console script. Returns (and exits with) the process exit code."""
    args = _globals(list(sys.argv[1:] if argv is None else argv))
    if Settings.verbose:
        _debug_log()
    code = 0
    try:
        _commands.load(args)
        returned = app(args=args, prog_name="modelpack", standalone_mode=False)
        # Outside standalone mode typer returns an Exit's code, and turns Ctrl-C into a returned 130.
        if isinstance(returned, int) and not isinstance(returned, bool) and returned:
            code = returned
            if code == 130:
                _err("interrupted")
    except ModelpackError as e:
        if Settings.verbose:
            _traceback()
        _err(str(e))
        code = e.exit_code
    except typer.Exit as e:
        code = e.exit_code
    except ClickUsageError as e:  # a bad flag, a missing argument, an unknown command: one line too
        command = e.ctx.command_path if e.ctx is not None else "modelpack"
        _err(f"{e.format_message()} (see `{command} --help`)")
        code = 2
    except TyperException as e:
        e.show()  # type: ignore[attr-defined]
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        _err("interrupted")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as e:
        if Settings.verbose:
            _traceback()
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):  # the user's to fix
            where = f" writing {e.filename}" if e.filename else ""
            _err(f"no space left on device{where} (free some space, e.g. modelpack gc, then retry)")
        else:  # a bug, not a user mistake: say so plainly
            _err(f"internal error: {type(e).__name__}: {e} (run with --verbose for the traceback)")
        code = 1
    if argv is None:
        sys.exit(code)
    return code
