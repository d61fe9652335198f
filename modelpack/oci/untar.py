"""Reading tar streams: a file object over chunks, and extraction that never leaves its directory.

The other half of oci/tar.py (which writes layers): unpack, dataset pull and the runner's unpacked releases
extract layers through here, as they arrive, never from a file on disk.

Containment is decided by file descriptors, not by path strings (docs/security.md, "Extraction"): every
folder on a member's way is opened with `O_NOFOLLOW | O_DIRECTORY` relative to its parent's descriptor, and
every file is created relative to its folder's descriptor, so no link (planted earlier, or there before) is
ever followed, however deep it nests; `os.path.realpath` gives up past PATH_MAX and then answers lexically,
which is how CVE-2025-4517 escaped the stdlib's own filter. Layers may not hold symlinks at all: modelpack
never writes one into a bundle or dataset (the build packs a link's content), the OpenSSF model signature
refuses them, and a link that is inside today can point outside once a later one moves under it.

The headers are parsed here (`tarfile.TarInfo.frombuf` for one 512-byte block; pax and GNU long names by
hand) and member bytes go from the chunks to the file with `os.write` on slices of the chunk: tarfile's
stream reader copied each piece three times, most of a 1 GiB unpack's time beyond the wire's.
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
from typing import BinaryIO, cast

from modelpack.errors import InputError
from modelpack.oci.tar import BLOCK, CHUNK, DIR_MODE, EXEC_MODE, FILE_MODE, check_arcname

# Version-control metadata: a folder git (or hg) would run a configured command from, so no layer may
# write one (a `.git/config` with core.fsmonitor runs on the next `git status` there).
VCS_DIRS = frozenset({".git", ".hg", ".svn"})
_ZERO_BLOCK = bytes(BLOCK)
_MAX_TIME = 1 << 40  # seconds: past any filesystem's range, and os.utime's
_MAX_META = 1 << 20  # a pax header or GNU long name larger than this is not a name: refused
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
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


class ChunkReader:
    """A read-only file object over an iterator of byte chunks, so tarfile can stream from a generator
    (a blob as it is verified, `docker save` as it arrives)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._cur = b""
        self._pos = 0  # an offset, not a slice: tarfile reads 10 KiB at a time out of MiB chunks

    def read(self, n: int = -1) -> bytes:
        out: list[bytes] = []
        while n != 0:
            if self._pos >= len(self._cur):
                nxt = next(self._it, None)
                if nxt is None:
                    break
                self._cur, self._pos = nxt, 0
                continue
            end = len(self._cur) if n < 0 else min(len(self._cur), self._pos + n)
            out.append(self._cur[self._pos : end])
            n = n - (end - self._pos) if n > 0 else n
            self._pos = end
        return b"".join(out)


class _Chunks:
    """The tar stream as the chunks it arrives in, consumed forward: small reads for headers, and member
    bytes handed on as memoryview slices of the chunk (no copy)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._cur = memoryview(b"")
        self._pos = 0

    def _fill(self) -> bool:
        while self._pos >= len(self._cur):
            nxt = next(self._it, None)
            if nxt is None:
                return False
            self._cur, self._pos = memoryview(nxt), 0
        return True

    def read(self, n: int) -> bytes:
        """Up to `n` bytes (fewer only at the end of the stream)."""
        out = bytearray()
        while len(out) < n and self._fill():
            take = min(n - len(out), len(self._cur) - self._pos)
            out += self._cur[self._pos : self._pos + take]
            self._pos += take
        return bytes(out)

    def pieces(self, n: int) -> Iterator[memoryview]:
        """Exactly the next `n` bytes, as slices of the chunks; EOFError when the stream ends first."""
        while n > 0:
            if not self._fill():
                raise EOFError("unexpected end of data")
            take = min(n, len(self._cur) - self._pos)
            yield self._cur[self._pos : self._pos + take]
            self._pos += take
            n -= take

    def skip(self, n: int) -> None:
        for _ in self.pieces(n):
            pass


class _Member:
    __slots__ = ("linkname", "mode", "mtime", "name", "size", "type")

    def __init__(self, info: tarfile.TarInfo, pax: dict[str, str], long_name: str | None,
                 long_link: str | None) -> None:  # fmt: skip
        self.name = pax.get("path", long_name if long_name is not None else info.name)
        self.linkname = pax.get("linkpath", long_link if long_link is not None else info.linkname)
        self.type = info.type
        try:
            self.size = int(pax["size"]) if "size" in pax else info.size
            self.mtime = int(float(pax["mtime"])) if "mtime" in pax else info.mtime
        except (ValueError, OverflowError):
            raise tarfile.HeaderError(f"a pax header of {self.name!r} has a malformed number") from None
        self.mode = info.mode
        if self.size < 0 or not -_MAX_TIME < self.mtime < _MAX_TIME:
            raise tarfile.HeaderError(f"{self.name!r} has a size or time out of range")


def _members(stream: _Chunks) -> Iterator[_Member]:
    """The members of the stream, pax and GNU long-name headers applied; stops at the end-of-archive block
    (or a clean end of the stream). The caller must consume each regular member's `size` bytes."""
    pax: dict[str, str] = {}
    long_name = long_link = None
    while True:
        block = stream.read(BLOCK)
        if not block or block == _ZERO_BLOCK:
            return
        if len(block) < BLOCK:
            raise EOFError("unexpected end of data")
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        if info.size < 0:
            raise tarfile.HeaderError("a header with a negative size")
        if info.type in _META_TYPES:
            data = _meta(stream, info.size)
            if info.type == tarfile.XHDTYPE:
                pax = _pax(data)
            elif info.type == tarfile.XGLTYPE:
                if {"path", "linkpath", "size"} & _pax(data).keys():
                    raise tarfile.HeaderError("a global pax header that renames or resizes members")
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            else:
                long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if info.type == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse") for k in pax):
            raise tarfile.HeaderError(f"{info.name!r} is a sparse file")
        member = _Member(info, pax, long_name, long_link)
        pax, long_name, long_link = {}, None, None
        yield member


def _meta(stream: _Chunks, size: int) -> bytes:
    if size > _MAX_META:
        raise tarfile.HeaderError(f"a {size}-byte pax header or long name (at most {_MAX_META})")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("unexpected end of data")
    stream.skip(-size % BLOCK)
    return data


def _pax(data: bytes) -> dict[str, str]:
    """pax records, `"%d %s=%s\\n"` each (POSIX.1-2001); values UTF-8."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise tarfile.HeaderError("a malformed pax header")
        end = pos + int(data[pos:space])
        record = data[space + 1 : end]
        if end > len(data) or end <= space or not record.endswith(b"\n") or b"=" not in record:
            raise tarfile.HeaderError("a malformed pax header")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return out


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
    if hasattr(source, "read"):  # a file object iterates by lines: read it in chunks instead
        f = cast(BinaryIO, source)
        chunks: Iterable[bytes] = iter(lambda: f.read(CHUNK), b"")
    else:
        chunks = source
    stream = _Chunks(chunks)
    done: list[str] = []
    with _Tree(Path(dest), force) as tree:
        try:
            for member in _members(stream):
                try:
                    done.append(tree.extract(member, stream, refuse))
                except OSError as e:  # a name this filesystem cannot hold; other errors are the machine's
                    if e.errno not in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                        raise
                    raise InputError(f"refused tar member {member.name[:200]!r}: {e.strerror}") from None
        except (tarfile.TarError, EOFError) as e:
            raise InputError(f"not a valid tar stream: {e}") from None
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

    def extract(self, m: _Member, stream: _Chunks, refuse: Refuse) -> str:
        name = m.name.rstrip("/") if m.type == tarfile.DIRTYPE or m.name.endswith("/") else m.name
        check_arcname(name)
        why = refuse(name)
        if why:
            raise InputError(f"refused tar member {m.name!r}: {why}")
        parts = name.split("/")
        if m.type == tarfile.SYMTYPE:
            raise InputError(f"refused tar member {m.name!r}: a symlink (to {m.linkname!r})",
                             hint="layers hold the files themselves, never links")  # fmt: skip
        if m.type not in (*_FILE_TYPES, tarfile.DIRTYPE, tarfile.LNKTYPE):
            raise InputError(f"refused tar member {m.name!r}: devices, fifos and other special files")
        parent = self.folder(parts[:-1], name)
        leaf = parts[-1]
        existing = _lstat(leaf, parent)
        if m.type == tarfile.DIRTYPE:
            if existing is None:
                os.mkdir(leaf, DIR_MODE, dir_fd=parent)
            elif not stat.S_ISDIR(existing.st_mode):
                raise InputError(f"refused tar member {m.name!r}: {self.root / name} exists, not a folder")
            stream.skip(m.size + (-m.size % BLOCK))
            return name
        if existing is not None and (not self.force or stat.S_ISDIR(existing.st_mode)):
            raise InputError(f"{self.root / name} already exists",
                             hint="pass --force to overwrite, or use an empty folder")  # fmt: skip
        tmp = f".mp-{os.getpid()}-{next(_tmp_names)}.tmp"
        try:
            if m.type == tarfile.LNKTYPE:
                self._hardlink(m, tmp, parent)
                stream.skip(m.size + (-m.size % BLOCK))
            else:
                mode = EXEC_MODE if m.mode & 0o111 else FILE_MODE
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                             dir_fd=parent)  # fmt: skip
                try:
                    _write_all(fd, stream.pieces(m.size))
                    os.utime(fd, (m.mtime, m.mtime))
                finally:
                    os.close(fd)
                stream.skip(-m.size % BLOCK)
            os.replace(tmp, leaf, src_dir_fd=parent, dst_dir_fd=parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
        return name

    def _hardlink(self, m: _Member, tmp: str, parent: int) -> None:
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
