"""The serving runtime that goes into every image: modelpack.serve's sources and its own pinned packages.

The runtime's lock is split by handler: requirements.lock (the web server and numpy) always, and
requirements-onnx.lock (onnxruntime, protobuf, flatbuffers, packaging) only for the built-in "onnx"
handler. A custom handler's image carries the web runtime and the user's own lock, nothing else; a custom
handler that uses onnxruntime pins it in its lock like any other dependency.
"""

from __future__ import annotations

from pathlib import Path

import modelpack
from modelpack.image.config import RUNTIME_DIR
from modelpack.oci.tar import TarEntry, entries_from

BASE_LOCK = "requirements.lock"
HANDLER_LOCKS = {"onnx": ("requirements-onnx.lock",)}  # handler -> the extra locks it needs


def _root(package_root: Path | None) -> Path:
    return package_root or Path(modelpack.__file__).parent


def runtime_entries(package_root: Path | None = None) -> list[TarEntry]:
    """modelpack/__init__.py and modelpack/serve/**.py: the runtime imports nothing else of modelpack."""
    root = _root(package_root)
    prefix = RUNTIME_DIR.lstrip("/")
    files = [(root / "__init__.py", f"{prefix}/modelpack/__init__.py")]
    files += [
        (p, f"{prefix}/modelpack/serve/{p.relative_to(root / 'serve').as_posix()}")
        for p in sorted((root / "serve").rglob("*"))
        if p.is_file() and (p.suffix == ".py" or (p.name.startswith("requirements") and p.suffix == ".lock"))
    ]
    return entries_from(files)


def runtime_locks(handler: str) -> tuple[str, ...]:
    """The runtime's lock files (in modelpack/serve/) an image with `handler` installs."""
    return (BASE_LOCK, *HANDLER_LOCKS.get(handler, ()))


def runtime_pins(handler: str = "onnx", package_root: Path | None = None) -> dict[str, str]:
    """name -> version the runtime needs for `handler` (lowercase names, as the locks spell them)."""
    pins: dict[str, str] = {}
    for name in runtime_locks(handler):
        for line in (_root(package_root) / "serve" / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                pkg, version = line.split("==", 1)
                pins[pkg.strip().lower()] = version.strip()
    return dict(sorted(pins.items()))
