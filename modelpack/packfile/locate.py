"""Where a project's modelpack.yaml is: `path` is the project directory or the packfile itself."""

from __future__ import annotations

from pathlib import Path

from modelpack.errors import InputError

PACKFILE = "modelpack.yaml"


def find_packfile(path: Path) -> Path:
    candidate = path / PACKFILE if path.is_dir() else path
    if not candidate.is_file():
        raise InputError(
            f"no {PACKFILE} in {path}", hint="run `modelpack init` there, or pass the project directory"
        )
    return candidate
