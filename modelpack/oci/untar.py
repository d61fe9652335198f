"""Extraction that never leaves its directory: the third part of the tar vocabulary, beside oci/tar.py
(writing layers) and oci/tarread.py (reading them). Unpack, dataset pull and the runner's unpacked releases
extract layers through here, as they arrive, never from a file on disk.

Containment is decided by file descriptors, not by path strings (docs/security.md, issue 21 table): every
folder on a member's way is opened with `O_NOFOLLOW | O_DIRECTORY` relative to its parent's descriptor, and
every file is created relative to its folder's descriptor, so no link (planted earlier, or there before) is
ever followed, however deep it nests; `os.path.realpath` gives up past PATH_MAX and then answers lexically,
which is how CVE-2025-4517 escaped the stdlib's own filter. Layers may not hold symlinks at all: modelpack
never writes one into a bundle or dataset (the build packs a link's content), the OpenSSF model signature
refuses them, and a link that is inside today can point outside once a later one moves under it.

Member bytes go from the chunks (tarread.members, which parses the headers) to the file with `os.write` on
slices of the chunk: no tarfile stream object, no join, no copy.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from modelpack.errors import InputError
from modelpack.oci.tar import DIR_MODE, EXEC_MODE, FILE_MODE, check_arcname
from modelpack.oci.tarread import FILE_TYPES, Member, members

# Version-control metadata: a folder git (or hg) would run a configured command from, so no layer may
# write one (a `.git/config` with core.fsmonitor runs on the next `git status` there).
VCS_DIRS = frozenset({".git", ".hg", ".svn"})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_tmp_names = itertools.count()

Refuse = Callable[[str], "str | None"]  # a member name -> why it is refused, or None


# What the OpenSSF model signature's verifier skips at the top of DIR (trust/oms.py IGNORED): a bundle
# holding one would carry files its signature does not cover.
UNSIGNED_TOP = frozenset({"model.sig", ".git", ".gitattributes", ".github", ".gitignore"})


def vcs_path(name: str) -> str | None:
    """Why `name` is refused in any layer: it writes into version-control metadata."""
    found = next((p for p in name.split("/") if p in VCS_DIRS), None)
    return f"{found} is version-control metadata, which runs commands from its config" if found else None


def bundle_path(name: str) -> str | None:
    """Why `name` is refused in a model bundle: version-control metadata anywhere, or a top-level name the
    model signature leaves unsigned."""
    top = name.split("/", 1)[0]
    if top in UNSIGNED_TOP:
        return f"{top} at the top of a bundle is not covered by its model signature"
    return vcs_path(name)


def safe_extract(
    source: Iterable[bytes] | BinaryIO, dest: Path | str, *, force: bool = False, refuse: Refuse = vcs_path
) -> list[str]:
    """Extract a tar stream under `dest`, refusing anything that would write elsewhere or be special.

    Refused with InputError: absolute names and `..`, symlinks, hardlinks to anything but a file extracted
    before them, devices and fifos, a folder on the way that is a link or not a folder, what `refuse` names
    (by default version-control metadata), and (unless `force`) existing files. Each file is written to a
    temporary name beside it and renamed into place, so a reader never sees half a file. Members extracted
    before a refusal stay (all inside `dest`). Returns the extracted names in order.
    """
    done: list[str] = []
    with _Tree(Path(dest), force) as tree:
        for member, body in members(source):
            try:
                done.append(tree.extract(member, body, refuse))
            except OSError as e:  # a name this filesystem cannot hold; other errors are the machine's
                if e.errno not in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                    raise
                raise InputError(f"refused tar member {member.name[:200]!r}: {e.strerror}") from None
    return done


class _Tree:
    """`dest` as a directory descriptor, and the member's folder as one (the last one kept open: tar
    streams list a folder's files together)."""

    def __init__(self, root: Path, force: bool) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.force = root, force
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._last: tuple[str, int] | None = None

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._last is not None:
            os.close(self._last[1])
        os.close(self.fd)

    def folder(self, parts: list[str], shown: str) -> int:
        """The descriptor of the folder `parts` under the root, created as needed, never through a link.
        Owned by the tree: do not close it."""
        key = "/".join(parts)
        if not parts:
            return self.fd
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        fd = os.dup(self.fd)
        try:
            for i, part in enumerate(parts):
                nxt = _open_folder(fd, part, f"{'/'.join(parts[: i + 1])!r} (on the way to {shown!r})")
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        if self._last is not None:
            os.close(self._last[1])
        self._last = (key, fd)
        return fd

    def extract(self, m: Member, body: Iterator[memoryview], refuse: Refuse) -> str:
        name = m.name.rstrip("/") if m.type == tarfile.DIRTYPE or m.name.endswith("/") else m.name
        check_arcname(name)
        why = refuse(name)
        if why:
            raise InputError(f"refused tar member {m.name!r}: {why}")
        parts = name.split("/")
        if m.type == tarfile.SYMTYPE:
            raise InputError(f"refused tar member {m.name!r}: a symlink (to {m.linkname!r})",
                             hint="layers hold the files themselves, never links")  # fmt: skip
        if m.type not in (*FILE_TYPES, tarfile.DIRTYPE, tarfile.LNKTYPE):
            raise InputError(f"refused tar member {m.name!r}: devices, fifos and other special files")
        parent = self.folder(parts[:-1], name)
        leaf = parts[-1]
        existing = _lstat(leaf, parent)
        if m.type == tarfile.DIRTYPE:
            if existing is None:
                os.mkdir(leaf, DIR_MODE, dir_fd=parent)
            elif not stat.S_ISDIR(existing.st_mode):
                raise InputError(f"refused tar member {m.name!r}: {self.root / name} exists, not a folder")
            return name
        if existing is not None and (not self.force or stat.S_ISDIR(existing.st_mode)):
            raise InputError(f"{self.root / name} already exists",
                             hint="pass --force to overwrite, or use an empty folder")  # fmt: skip
        tmp = f".mp-{os.getpid()}-{next(_tmp_names)}.tmp"
        try:
            if m.type == tarfile.LNKTYPE:
                self._hardlink(m, tmp, parent)
            else:
                mode = EXEC_MODE if m.mode & 0o111 else FILE_MODE
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                             dir_fd=parent)  # fmt: skip
                try:
                    _write_all(fd, body)
                    # mtime 0 is the deterministic layers' "no time" (dataset layers write it whatever the
                    # commit): a file dated 1970 looks ancient to make-style staleness checks, so it keeps
                    # the time it was written
                    if m.mtime > 0:
                        os.utime(fd, (m.mtime, m.mtime))
                finally:
                    os.close(fd)
            os.replace(tmp, leaf, src_dir_fd=parent, dst_dir_fd=parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
        return name

    def _hardlink(self, m: Member, tmp: str, parent: int) -> None:
        source = check_arcname(m.linkname.rstrip("/"))
        parts = source.split("/")
        try:
            folder = self._existing_folder(parts[:-1])
        except OSError:
            folder = None
        try:
            st = _lstat(parts[-1], folder) if folder is not None else None
            if st is None or not stat.S_ISREG(st.st_mode):
                raise InputError(
                    f"refused tar member {m.name!r}: hardlink to {m.linkname!r}, not a file here"
                )
            os.link(parts[-1], tmp, src_dir_fd=folder, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            if folder is not None:
                os.close(folder)

    def _existing_folder(self, parts: list[str]) -> int:
        fd = os.dup(self.fd)
        try:
            for part in parts:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd


def _open_folder(parent: int, part: str, shown: str) -> int:
    for _ in range(2):
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # made meanwhile, or a dangling link: the open says
                os.mkdir(part, DIR_MODE, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InputError(f"refused tar member: {shown} is a link or not a folder") from None
            raise
    raise InputError(f"refused tar member: {shown} cannot be made a folder")


def _lstat(name: str, folder: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _write_all(fd: int, pieces: Iterable[memoryview]) -> None:
    for piece in pieces:
        while piece:
            piece = piece[os.write(fd, piece) :]
