"""Run the installed `modelpack` console script as a user would, capturing its output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest


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
    return subprocess.run(
        [str(script()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=full,
        input=stdin,
        cwd=cwd,
    )
