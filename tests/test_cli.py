"""The installed console script: version, help, and the usage-error boundary, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script() -> Path:
    # The console script installed into the same environment as the interpreter running the tests.
    script = Path(sys.executable).parent / "modelpack"
    if not script.exists():
        pytest.fail(f"console script not installed at {script}: run scripts/test (pip install -e .)")
    return script


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELPACK_VERBOSE"}
    return subprocess.run(
        [str(_script()), *args], capture_output=True, text=True, timeout=60, check=False, env=env, cwd=ROOT
    )


def _source_version() -> str:
    text = (ROOT / "modelpack" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert match, "modelpack/__init__.py declares no __version__"
    return match.group(1)


def test_version_prints_the_package_version() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"modelpack {_source_version()}"


def test_help_shows_usage() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: modelpack" in result.stdout
    assert "--version" in result.stdout


def test_unknown_command_is_a_usage_error_without_traceback() -> None:
    result = _run("no-such-command")
    assert result.returncode == 2
    assert "no-such-command" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_option_is_a_usage_error_without_traceback() -> None:
    result = _run("--no-such-option")
    assert result.returncode == 2
    assert "--no-such-option" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
