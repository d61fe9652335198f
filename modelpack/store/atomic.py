"""Small file-system steps the store is built from: whole-file replacement, fsync, a full disk as one line."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelpack.errors import StoreError


@contextmanager
def space(path: Path) -> Iterator[None]:
    """A full disk is the user's to fix: say so in one line, not as an internal error."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise StoreError(
                f"no space left on device writing {path}", hint="free some space (modelpack gc), then retry"
            ) from None
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` whole (temp beside it, fsync, rename): a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
