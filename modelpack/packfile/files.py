"""Expanding the files and directories a packfile names into the sorted list of files they hold."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from modelpack.errors import InputError

# Never part of a model, its code or its docs, and they change between two otherwise identical builds.
IGNORED_NAMES = frozenset({".git", "__pycache__", ".ipynb_checkpoints", ".DS_Store", ".pytest_cache"})
IGNORED_SUFFIXES = (".pyc", ".pyo")


def expand(paths: Iterable[Path], root: Path) -> tuple[Path, ...]:
    """Every regular file under `paths` (files stay as they are), sorted by path relative to `root`.

    A file reached through two listed paths appears once. Symlinks are followed; a directory reached
    twice through links is walked once.
    """
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            for rel, file in walk(path, ignore=True):
                found.setdefault((path / rel).relative_to(root).as_posix(), file)
        else:
            found.setdefault(path.relative_to(root).as_posix(), path)
    return tuple(found[k] for k in sorted(found))


def walk(root: Path, *, ignore: bool = False) -> list[tuple[str, Path]]:
    """Every regular file under `root` as (posix path relative to `root`, path), sorted.

    With `ignore`, caches and VCS folders (IGNORED_NAMES, *.pyc) are skipped. Names that `sha256sum`
    would have to escape (newline, backslash) are refused so hash listings stay checkable as written.
    """
    out: list[tuple[str, Path]] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=_raise):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        if ignore:
            dirnames[:] = [d for d in dirnames if d not in IGNORED_NAMES]
        for name in filenames:
            if ignore and (name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES)):
                continue
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if any(c in rel for c in "\n\r\\"):
                raise InputError(f"{root}: file name {rel!r} has a newline or backslash; rename it")
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                raise InputError(f"{path} is a broken symlink") from None
            except OSError as e:
                raise InputError(f"cannot read {path}: {e.strerror}") from None
            if stat.S_ISREG(mode):
                out.append((rel, path))
    out.sort(key=lambda item: item[0])
    return out


def _raise(error: OSError) -> None:
    raise InputError(f"cannot read directory {error.filename}: {error.strerror}")
