"""Run the installed `modelpack` console script as a user would, capturing its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from support.schemacheck import check_cli_json, has_shape


def script() -> Path:
    path = Path(sys.executable).parent / "modelpack"
    if not path.exists():
        pytest.fail(f"console script not installed at {path}: run scripts/test (pip install -e .)")
    return path


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "MODELPACK_VERBOSE"}
    full.update(env or {})
    done = subprocess.run(
        [str(script()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=full,
        input=stdin,
        cwd=cwd,
    )
    check_json(args, done.stdout)
    return done


def check_json(args: tuple[str, ...] | list[str], stdout: str) -> None:
    """Every `--json` output a test sees is checked against the command's documented shape."""
    if "--json" not in args or not stdout.strip():
        return
    words = [a for a in args if not a.startswith("-")]
    # a command group's commands have shapes of their own: `dataset-push`, `policy-set`, ...
    group = f"{words[0]}-{words[1]}" if len(words) > 1 else ""
    command = group if group and has_shape(group) else words[0]
    check_cli_json(command, json.loads(stdout))


def run_main(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float | None = None,  # accepted for run_cli's signature; an in-process call has no timeout
) -> subprocess.CompletedProcess[str]:
    """`modelpack ARGS` in this process, through the same `main(argv)` and error boundary as the console
    script: for tests where the process itself is not the point (the subprocess tests keep proving the
    script and the boundary). Environment changes last for the call only."""
    import contextlib
    import io

    from modelpack.cli import main
    from modelpack.cli._app import Settings

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    saved_verbose, saved_quiet, saved_stdin = Settings.verbose, Settings.quiet, sys.stdin
    try:
        sys.stdin = io.StringIO(stdin or "")
        os.environ.pop("MODELPACK_VERBOSE", None)
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        Settings.verbose, Settings.quiet = saved_verbose, saved_quiet
        sys.stdin = saved_stdin
    check_json(args, out.getvalue())
    return subprocess.CompletedProcess(["modelpack", *args], code, out.getvalue(), err.getvalue())
