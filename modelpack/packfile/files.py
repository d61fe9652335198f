"""Expanding the files and directories a packfile names into the sorted list of files they hold."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import yaml

from modelpack.errors import InputError
from modelpack.packfile.nodes import Doc

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


class Locator:
    """Resolves the paths a packfile names, relative to its directory, and checks they exist."""

    def __init__(self, doc: Doc, root: Path) -> None:
        self.doc = doc
        self.root = root

    def shown(self, text: str) -> str:
        """How to name a file the packfile points at in errors: as the packfile itself was named."""
        return os.path.normpath(os.path.join(os.path.dirname(self.doc.display), text))

    def path(self, node: yaml.Node, key: str, *, inside: bool, kind: str = "any") -> tuple[Path, str]:
        """(absolute path, text as written) of an existing file or directory named at `node`."""
        text = self.doc.string(node, key)
        if "\0" in text:
            raise self.doc.error(node, key, "a path cannot contain a NUL character")
        lexical = os.path.normpath(os.path.join(self.root, os.path.expanduser(text)))
        if inside and os.path.commonpath([lexical, str(self.root)]) != str(self.root):
            raise self.doc.error(
                node, key, f"{text!r} is outside the directory of modelpack.yaml",
                hint="everything shipped in the bundle must live next to modelpack.yaml",
            )  # fmt: skip
        path = Path(lexical)
        try:
            is_dir = path.is_dir()
            exists = is_dir or path.is_file()
        except (OSError, ValueError):
            exists = is_dir = False
        if not exists:
            raise self.doc.error(node, key, f"{text!r} does not exist", hint=f"looked for {path}")
        if kind == "file" and is_dir:
            raise self.doc.error(node, key, f"{text!r} is a directory, expected a file")
        return path, text

    def paths(self, node: yaml.Node | None, key: str, *, inside: bool) -> list[Path]:
        if node is None:
            return []
        out: list[Path] = []
        for i, item in enumerate(self.doc.sequence(node, key)):
            path, text = self.path(item, f"{key}[{i}]", inside=inside)
            if path in out:
                raise self.doc.error(item, f"{key}[{i}]", f"{text!r} is listed twice")
            out.append(path)
        return out
