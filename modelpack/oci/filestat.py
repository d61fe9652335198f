"""A file's stat identity: what the filesystem says about its content, so that any change to the bytes
changes it. Tar entries carry it (checked again when read), the stat cache keys on it (store/statcache.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileStat:
    """The identity of a file's content as far as the filesystem tells: any change to the bytes changes it."""

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path | str) -> FileStat:
        return cls.from_stat(os.stat(path))

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def key(self) -> list[int]:
        return [self.size, self.mtime_ns, self.inode, self.ctime_ns]


def file_key(path: Path | str, stat: FileStat) -> list[Any]:
    """The key part naming one file's content: absolute path plus its stat identity.

    A path that is not UTF-8 (Linux names are bytes) is keyed by its bytes in hex: JSON cannot hold it
    as text, and no absolute path starts with "bytes:", so the two kinds of key never meet."""
    text = os.path.abspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "bytes:" + os.fsencode(text).hex()
    return [text, *stat.key()]


def shown(path: Path | str) -> str:
    """A path fit for a one-line message: bytes that are not UTF-8 shown escaped (`\\xff`)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
