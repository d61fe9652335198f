"""Command line: parse, call one library function, render. The error boundary is `_main.py`.

`modelpack --version` is answered here before anything else is imported (typer alone takes ~0.1-0.25 s
to import); every other command goes through `_main.main`, which imports only the running command's module.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `modelpack` console script. Returns (and exits with) the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    if list(args) == ["--version"]:
        from modelpack import __version__

        sys.stdout.write(f"modelpack {__version__}\n")
        if argv is None:
            sys.exit(0)
        return 0
    # httpx imports its own command line (and with it rich and click, ~0.2-0.4 s) on `import httpx`, unless
    # that module is absent; this process is ours and never runs httpx's CLI, so it is made absent here.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # httpcore imports trio whenever it is installed (selenium brings it into dev environments; ~90 ms) to
    # pick locks for trio's event loop; this process speaks synchronous HTTP only, and `serve` / `test`
    # run the model in a child process, so no code here ever needs trio.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    from modelpack.cli._main import main as run

    return run(argv)
