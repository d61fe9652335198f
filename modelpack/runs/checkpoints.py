"""A checkpoint's files and their digests: what `run.checkpoint(path)` records, read once."""

from __future__ import annotations

import hashlib
from pathlib import Path

from modelpack.errors import InputError

CHUNK = 1 << 20


def file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return f"sha256:{h.hexdigest()}", size


def hash_checkpoint(path: Path) -> list[tuple[str, Path, str, int]]:
    """(path inside the checkpoint, file, digest, size) for a file or every regular file of a folder;
    symlinks are refused (a checkpoint is the bytes training wrote, not a pointer elsewhere)."""
    if path.is_symlink() or not path.exists():
        raise InputError(f"checkpoint {path} is missing or a symlink", hint="pass the file or folder written")
    if path.is_file():
        return [(path.name, path, *file_digest(path))]
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_symlink():
            raise InputError(f"checkpoint {path}: {p} is a symlink", hint="save real files")
        if p.is_file():
            out.append((p.relative_to(path).as_posix(), p, *file_digest(p)))
    if not out:
        raise InputError(f"checkpoint {path} holds no file")
    return out
