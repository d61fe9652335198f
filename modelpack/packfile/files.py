"""Expanding the files and directories a packfile names into the sorted list of files they hold.

Symlinks. Whatever is packed ships in the bundle and the image, so a link is resolved and must land inside
the project directory (the directory of modelpack.yaml): a link that leaves it, dangles or loops is an
InputError naming the link and its target. A link that stays inside is packed as the content of the file
it points at, under the link's own name, not as a link: the bundle then holds plain files that unpack the
same on any filesystem, and nothing in it can point anywhere. A directory link is walked like the
directory it names; one that points back at a folder it sits in is a loop.

Never packed, even with `code.paths: [.]`: VCS and cache folders (IGNORED_NAMES), virtualenvs (`.venv`,
or any folder holding `pyvenv.cfg`) and OCI layout stores (a folder holding `oci-layout`, or a store the
caller names with `skip`, e.g. MODELPACK_STORE inside the project): a store packed into itself would
grow every build by the one before.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import yaml

from modelpack.errors import InputError
from modelpack.oci.filestat import shown
from modelpack.oci.untar import VCS_DIRS
from modelpack.packfile.nodes import Doc

# Never part of a model, its code or its docs, and they change between two otherwise identical builds.
IGNORED_NAMES = frozenset(
    {".git", ".venv", "__pycache__", ".ipynb_checkpoints", ".DS_Store", ".pytest_cache", ".mypy_cache"}
)
IGNORED_SUFFIXES = (".pyc", ".pyo")
# Folders whose files are not even packed when listed one by one (a listed `.git/config` ships a token).
_NEVER_PACKED_NAMES = frozenset({".git", ".venv"})
# A folder holding one of these is a store or a virtualenv, whatever its name.
_NEVER_PACKED_MARKERS = {"oci-layout": "an OCI layout store", "pyvenv.cfg": "a Python virtualenv"}
_LINK_HINT = "copy the file into the project, or remove the link"


def expand(paths: Iterable[Path], root: Path, *, skip: Iterable[Path] = ()) -> tuple[Path, ...]:
    """Every regular file under `paths` (files stay as they are), sorted by path relative to `root`.

    A file reached through two listed paths appears once. Links are resolved and must stay inside
    `root` (module doc); folders that are never packed, and those in `skip`, are left out.
    """
    skipped = frozenset(os.path.realpath(p) for p in skip)
    real_root = os.path.realpath(root)
    found: dict[str, Path] = {}
    for path in paths:
        what = never_packed_above(resolve_inside(path, root), real_root, skipped)
        if what:
            raise InputError(f"{shown(path)} is inside {what}, which is never packed", hint="list others")
        if path.is_dir():
            for rel, file in walk(path, ignore=True, inside=root, skip=skipped):
                found.setdefault((path / rel).relative_to(root).as_posix(), file)
        else:
            found.setdefault(path.relative_to(root).as_posix(), path)
    return tuple(found[k] for k in sorted(found))


def walk(
    root: Path, *, ignore: bool = False, inside: Path | None = None, skip: Iterable[str] = ()
) -> list[tuple[str, Path]]:
    """Every regular file under `root` as (posix path relative to `root`, path), sorted.

    With `ignore` the walk is of files to pack: never-packed folders (module doc) and those whose real path
    is in `skip` are left out, caches (IGNORED_NAMES, *.pyc) skipped, and every link must resolve inside
    `inside` (default `root`). Without it (hashing data that is not shipped) links are followed wherever
    they go and a folder reached twice is walked once. Version-control folders (VCS_DIRS) are never
    walked. Names that `sha256sum` would have to escape
    (newline, backslash) or that are not UTF-8 are refused so listings and tars stay as written.
    """
    limit = os.path.realpath(inside or root) if ignore else None
    label = "the project directory" if inside is not None else "the folder being packed"
    skipped = frozenset(skip)
    if limit is not None:
        what = _never_packed(os.path.realpath(root), skipped)
        if what:
            raise InputError(f"{shown(root)} is {what}, which is never packed", hint="list the files to pack")
    out: list[tuple[str, Path]] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=_raise):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        # Version-control metadata is never walked, not even for a dataset: it holds tokens and commands
        # (a `.git/config` fsmonitor), and `dataset pull` refuses it.
        dirnames[:] = [d for d in dirnames if d not in VCS_DIRS]
        filenames = [f for f in filenames if f not in VCS_DIRS]
        if limit is not None:
            dirnames[:] = [d for d in dirnames if _descend(Path(dirpath, d), limit, skipped, label)]
        for name in filenames:
            if ignore and (name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES)):
                continue
            path = Path(dirpath, name)
            rel = _checked_name(root, path.relative_to(root).as_posix())
            if limit is not None and path.is_symlink():
                resolve_inside(path, Path(limit), label=label)
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                raise InputError(f"{shown(path)} is a broken symlink") from None
            except OSError as e:
                raise InputError(f"cannot read {shown(path)}: {e.strerror}") from None
            if stat.S_ISREG(mode):
                out.append((rel, path))
    out.sort(key=lambda item: item[0])
    return out


def resolve_inside(path: Path, root: Path, *, label: str = "the project directory") -> str:
    """The real path of `path`, which must lie inside `root`: a link that leaves it, dangles or loops raises
    an InputError naming the link and its target."""
    target = os.path.realpath(path)
    real_root = os.path.realpath(root)
    link, to = shown(path), shown(target)
    how = "is a symlink to" if path.is_symlink() else "resolves through a symlink to"
    if not _under(target, real_root):
        where = f"outside {label} {shown(real_root)}"
        raise InputError(f"{link} {how} {to}, {where}", hint=_LINK_HINT)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{link} {how} {to}, which does not exist", hint=_LINK_HINT) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{link} is a symlink loop (through {to})", hint=_LINK_HINT) from None
        raise InputError(f"cannot read {link}: {e.strerror}") from None
    return target


def never_packed_above(real: str, real_root: str, skip: frozenset[str]) -> str | None:
    """The never-packed folder (module doc) between `real_root` and the real path `real`, if any."""
    folder = os.path.dirname(real)
    while _under(folder, real_root):
        what = _never_packed(folder, skip)
        if what is None and os.path.basename(folder) in _NEVER_PACKED_NAMES:
            what = shown(folder)
        if what is not None or folder == real_root:
            return what
        folder = os.path.dirname(folder)
    return None


def _descend(path: Path, limit: str, skip: frozenset[str], label: str) -> bool:
    """Whether a packing walk goes into the folder `path`; a link leaving `limit` or looping raises."""
    if path.name in IGNORED_NAMES:
        return False
    target = resolve_inside(path, Path(limit), label=label)
    if path.is_symlink() and _under(os.path.realpath(path.parent), target):
        raise InputError(f"{shown(path)} is a symlink loop: it points at {shown(target)}, a folder it is in",
                         hint=_LINK_HINT)  # fmt: skip
    return _never_packed(target, skip) is None


def _never_packed(real: str, skip: frozenset[str]) -> str | None:
    if real in skip:
        return f"the local store {shown(real)}"
    for marker, what in _NEVER_PACKED_MARKERS.items():
        if os.path.isfile(os.path.join(real, marker)):
            return f"{what} ({shown(real)})"
    return None


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _checked_name(root: Path, rel: str) -> str:
    if any(c in rel for c in "\n\r\\"):
        raise InputError(f"{shown(root)}: file name {shown(rel)!r} has a newline or backslash; rename it")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"{shown(root)}: file name '{shown(rel)}' is not UTF-8 (its bytes shown escaped)",
            hint="rename it: names in a bundle are UTF-8",
        ) from None
    return rel


def _raise(error: OSError) -> None:
    raise InputError(f"cannot read directory {shown(error.filename or '?')}: {error.strerror}")


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
        if inside and os.path.lexists(path):
            self.contain(node, key, path)
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

    def contain(self, node: yaml.Node, key: str, path: Path) -> None:
        """Refuse `path` when a link takes it out of the project (module doc), naming the packfile line."""
        try:
            resolve_inside(path, self.root)
        except InputError as e:
            raise self.doc.error(node, key, e.message, hint=e.hint) from None

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
