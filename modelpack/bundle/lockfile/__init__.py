"""Lockfiles: every format pins exact versions; modelpack reads them into one frozen `Lock`.

Formats, detected from the file name: `uv.lock`, `poetry.lock`, `Pipfile.lock`, `pylock.toml` /
`pylock.<name>.toml` (PEP 751); anything else is read as a requirements.txt-style lock
(`requirements.lock`, `requirements.txt`, ...). `Lock.as_requirements()` turns any of them into the
pip-installable text the image build downloads wheels from.
"""

from __future__ import annotations

import re
from pathlib import Path

from modelpack.bundle.lockfile import pipfile, poetry, pylock, requirements, uv
from modelpack.bundle.lockfile.model import FORMATS, Lock, LockedPackage, normalize_name, sort_packages
from modelpack.errors import InputError
from modelpack.oci import digest
from modelpack.record.files import read_bounded

_PYLOCK = re.compile(r"^pylock\.([^.]+\.)?toml$")
_MAX_LOCK = 32 << 20

__all__ = ["FORMATS", "Lock", "LockedPackage", "detect_format", "load_lock", "normalize_name", "parse_lock"]


def detect_format(path: Path) -> str:
    name = path.name
    if name == "uv.lock":
        return "uv"
    if name == "poetry.lock":
        return "poetry"
    if name == "Pipfile.lock":
        return "pipfile"
    if _PYLOCK.match(name):
        return "pylock"
    return "requirements"


def load_lock(path: Path, *, display: str | None = None) -> Lock:
    """Read and check a lockfile; every refusal is an InputError naming the file (and line, when known)."""
    where = display or str(path)
    data = read_bounded(path, where=where, limit=_MAX_LOCK, what="a lockfile", missing="no such lockfile")
    return parse_lock(data, path=path, display=where)


def parse_lock(data: bytes, *, path: Path, display: str | None = None) -> Lock:
    where = display or str(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: not UTF-8 text (byte {e.start})") from None
    fmt = detect_format(path)
    python: str | None = None
    requires: str | None = None
    options: list[str] = []
    if fmt == "requirements":
        packages, options, python = requirements.parse(text, where)
    elif fmt == "uv":
        packages, requires = uv.parse(text, where)
    elif fmt == "poetry":
        packages, requires = poetry.parse(text, where)
    elif fmt == "pipfile":
        packages, python = pipfile.parse(text, where)
    else:
        packages, requires = pylock.parse(text, where)
    if not packages:
        raise InputError(f"{where}: locks no packages", hint="the serving code needs at least its runtime")
    return Lock(
        path=path,
        format=fmt,
        sha256=digest.of_bytes(data),
        python_version=python,
        packages=sort_packages(packages, where),
        requires_python=requires,
        options=tuple(options),
    )
