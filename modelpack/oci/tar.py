"""Deterministic, streaming tar layers: same files in, same bytes out, in constant memory.

A layer is planned as a list of frozen `TarEntry`s (no bytes read), streamed as chunks (headers, file content
in 1 MiB reads, padding, the two end blocks), and measured by `tar_size` without reading content. Every
header field that could leak the build machine is fixed (DESIGN.md, "Known pitfalls"): POSIX pax format that
falls back to plain USTAR headers whenever a name fits, an integer mtime given by the caller (so tarfile
never writes a pax mtime record), uid/gid 0, empty uname/gname, modes 0o644 / 0o755. Only names over 100
bytes, non-ASCII names or files over 8 GiB get a pax header, and its content is a pure function of the entry.

The end of the archive is the two zero blocks and nothing more (as Go's archive/tar writes), not tarfile's
padding to a 10 KiB record: the size is then a plain sum over entries.
"""

from __future__ import annotations

import itertools
import os
import stat as stat_mode
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from modelpack.errors import InputError
from modelpack.oci import digest
from modelpack.oci.filestat import FileStat, file_key

FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755
CHUNK = 1 << 20
BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
MAX_MTIME = 8**11 - 1  # the largest mtime a USTAR header holds; above it tarfile would add a pax record
LAYER_KEY_VERSION = "tar-v1"  # bump when the byte layout changes, so cached layer digests are not reused

Kind = Literal["file", "dir", "symlink"]
_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}


@dataclass(frozen=True)
class TarEntry:
    """One tar member. `source` is a path (read when streamed) or the bytes themselves, for files only."""

    arcname: str
    kind: Kind = "file"
    source: Path | bytes | None = None
    size: int = 0
    mode: int = FILE_MODE
    linkname: str = ""
    stat: FileStat | None = None  # identity of `source` when planned; checked again when read

    def __post_init__(self) -> None:
        check_arcname(self.arcname)
        if self.kind == "file" and self.source is None:
            raise ValueError(f"tar entry {self.arcname}: a file needs a source")
        if self.kind == "symlink" and not self.linkname:
            raise ValueError(f"tar entry {self.arcname}: a symlink needs a linkname")
        if isinstance(self.source, bytes) and self.size != len(self.source):
            raise ValueError(f"tar entry {self.arcname}: size {self.size} != {len(self.source)} bytes")

    @classmethod
    def directory(cls, arcname: str) -> TarEntry:
        return cls(arcname, "dir", mode=DIR_MODE)

    @classmethod
    def from_bytes(cls, arcname: str, data: bytes, *, executable: bool = False) -> TarEntry:
        return cls(arcname, "file", data, len(data), EXEC_MODE if executable else FILE_MODE)

    @classmethod
    def from_file(cls, path: Path | str, arcname: str) -> TarEntry:
        """A regular file (a symlink given explicitly is followed); its stat identity is recorded now."""
        path = Path(path)
        st = _stat(path, follow=True)
        if not stat_mode.S_ISREG(st.st_mode):
            raise InputError(f"{path} is not a regular file", hint="only files and directories can be packed")
        return cls._file(path, arcname, st)

    @classmethod
    def _file(cls, path: Path, arcname: str, st: os.stat_result) -> TarEntry:
        mode = EXEC_MODE if st.st_mode & 0o111 else FILE_MODE
        return cls(arcname, "file", path, st.st_size, mode, stat=FileStat.from_stat(st))


def check_arcname(name: str) -> str:
    """A relative POSIX path with no empty, `.` or `..` components: the only names we write or extract."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"invalid path {name!r} inside a tar", hint="paths must be relative, without '..'")
    return name


def entries_from(sources: Iterable[tuple[Path | str, str]]) -> list[TarEntry]:
    """Plan a layer from (path on disk, name in the tar) pairs: directories walked in sorted order, parent
    directories added, the result sorted. Symlinks inside a walked directory are kept as symlinks when they
    point inside it; one pointing outside, and sockets, fifos and devices, raise InputError."""
    found: dict[str, TarEntry] = {}
    for src, arcname in sources:
        path = Path(src)
        st = _stat(path, follow=True)
        if stat_mode.S_ISDIR(st.st_mode):
            _add(found, TarEntry.directory(arcname))
            _walk(found, path, arcname, Path(os.path.realpath(path)))
        elif stat_mode.S_ISREG(st.st_mode):
            _add(found, TarEntry._file(path, arcname, st))
        else:
            raise InputError(f"{path} is not a regular file or directory", hint="remove it from the inputs")
    return with_parents(found.values())


def with_parents(entries: Iterable[TarEntry]) -> list[TarEntry]:
    """`entries` plus a directory entry for every missing parent folder, sorted; duplicates raise."""
    found: dict[str, TarEntry] = {}
    for e in entries:
        _add(found, e)
    for name in list(found):
        parts = name.split("/")
        for i in range(1, len(parts)):
            _add(found, TarEntry.directory("/".join(parts[:i])))
    return sorted(found.values(), key=lambda e: e.arcname)


def _walk(found: dict[str, TarEntry], folder: Path, prefix: str, root: Path) -> None:
    try:
        children = sorted(os.scandir(folder), key=lambda d: d.name)
    except OSError as e:
        raise InputError(f"{folder} cannot be listed: {e.strerror}") from None
    for child in children:
        path, arcname = Path(child.path), f"{prefix}/{child.name}"
        st = _stat(path, follow=False)
        if stat_mode.S_ISLNK(st.st_mode):
            target = Path(os.path.realpath(path))
            if target != root and root not in target.parents:
                raise InputError(
                    f"{path} is a symlink to {target}, outside {root}",
                    hint="copy the file in, or name the real file as an input",
                )
            _add(found, TarEntry(arcname, "symlink", linkname=os.readlink(path), mode=0o777))
        elif stat_mode.S_ISDIR(st.st_mode):
            _add(found, TarEntry.directory(arcname))
            _walk(found, path, arcname, root)
        elif stat_mode.S_ISREG(st.st_mode):
            _add(found, TarEntry._file(path, arcname, st))
        else:
            raise InputError(f"{path} is a special file (device, fifo or socket)", hint="remove it")


def _add(found: dict[str, TarEntry], entry: TarEntry) -> None:
    old = found.get(entry.arcname)
    if old is None:
        found[entry.arcname] = entry
    elif not (old.kind == entry.kind == "dir"):
        raise InputError(f"two inputs both go to {entry.arcname!r} in the layer", hint="rename one of them")


def _stat(path: Path, *, follow: bool) -> os.stat_result:
    try:
        return os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except OSError as e:
        raise InputError(f"{path} cannot be read: {e.strerror}") from None


def _ordered(entries: Sequence[TarEntry]) -> list[TarEntry]:
    ordered = sorted(entries, key=lambda e: e.arcname)
    for a, b in itertools.pairwise(ordered):
        if a.arcname == b.arcname:
            raise InputError(f"two entries named {a.arcname!r} in one layer")
    return ordered


def _check_mtime(mtime: int) -> int:
    if not isinstance(mtime, int) or isinstance(mtime, bool) or not 0 <= mtime <= MAX_MTIME:
        raise InputError(f"tar mtime {mtime!r} must be an integer from 0 to {MAX_MTIME} (SOURCE_DATE_EPOCH?)")
    return mtime


def source_date_epoch(environ: Mapping[str, str] = os.environ) -> int:
    """The tar mtime from `SOURCE_DATE_EPOCH` (reproducible-builds.org), else 0."""
    value = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise InputError(
            f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds",
            hint="e.g. $(git log -1 --format=%ct)",
        )
    return _check_mtime(int(value))


def header(entry: TarEntry, mtime: int = 0) -> bytes:
    info = tarfile.TarInfo(entry.arcname)
    info.type = _TYPES[entry.kind]
    info.mode = entry.mode
    info.size = entry.size if entry.kind == "file" else 0
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.linkname = entry.linkname
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_size(entries: Sequence[TarEntry], mtime: int = 0) -> int:
    """The exact byte size of `tar_chunks(entries, mtime)`, computed from the plan alone."""
    _check_mtime(mtime)
    total = len(END_OF_ARCHIVE)
    for e in _ordered(entries):
        total += len(header(e, mtime))
        if e.kind == "file":
            total += e.size + (-e.size % BLOCK)
    return total


def tar_chunks(entries: Sequence[TarEntry], mtime: int = 0) -> Iterator[bytes]:
    """The layer's bytes, in chunks of at most 1 MiB of content. Raises InputError if a file changed."""
    _check_mtime(mtime)
    for e in _ordered(entries):
        yield header(e, mtime)
        if e.kind == "file":
            yield from _content(e)
            if e.size % BLOCK:
                yield b"\0" * (-e.size % BLOCK)
    yield END_OF_ARCHIVE


def layer_parts(entries: Sequence[TarEntry], mtime: int = 0) -> list[bytes | TarEntry]:
    """`tar_chunks`' exact bytes as runs of bytes (headers, in-memory files, padding, the end blocks) and
    the file entries whose content goes between them: what a source-backed blob records (store/sourced.py)."""
    _check_mtime(mtime)
    parts: list[bytes | TarEntry] = []
    run = bytearray()
    for e in _ordered(entries):
        run += header(e, mtime)
        if e.kind != "file":
            continue
        if isinstance(e.source, bytes):
            run += e.source
        else:
            parts += [bytes(run), e]
            run.clear()
        run += b"\0" * (-e.size % BLOCK)
    run += END_OF_ARCHIVE
    parts.append(bytes(run))
    return [p for p in parts if not isinstance(p, bytes) or p]


def _content(e: TarEntry) -> Iterator[bytes]:
    if isinstance(e.source, bytes):
        for i in range(0, len(e.source), CHUNK):
            yield e.source[i : i + CHUNK]
        return
    assert e.source is not None
    changed = InputError(
        f"{e.source} changed while it was read", hint="wait until whatever writes it has finished, then retry"
    )
    try:
        f = open(e.source, "rb")  # noqa: SIM115 - closed in finally across yields
    except OSError as err:
        raise InputError(f"{e.source} cannot be read: {err.strerror}") from None
    try:
        before = FileStat.from_stat(os.fstat(f.fileno()))
        if before.size != e.size or (e.stat is not None and before != e.stat):
            raise changed
        left = e.size
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise changed
            left -= len(chunk)
            yield chunk
        if f.read(1) or FileStat.from_stat(os.fstat(f.fileno())) != before:
            raise changed
    finally:
        f.close()


def layer_key(entries: Sequence[TarEntry], mtime: int = 0) -> list[object]:
    """A stat-cache key naming this exact layer: every entry's header fields and its content's identity."""
    parts: list[object] = [LAYER_KEY_VERSION, mtime]
    for e in _ordered(entries):
        content: object = None
        if isinstance(e.source, bytes):
            content = digest.of_bytes(e.source)
        elif e.source is not None:
            content = file_key(e.source, e.stat or FileStat.of(e.source))
        parts.append([e.arcname, e.kind, e.mode, e.size, e.linkname, content])
    return parts


class LayerCache(Protocol):
    """What `layer_digest` needs of a cache (store/statcache.py's StatCache is one; oci sits below the
    store)."""

    def get(self, key_parts: Sequence[Any]) -> Any | None: ...

    def put(self, key_parts: Sequence[Any], value: Any, *, stats: Iterable[FileStat] = ()) -> bool: ...


def layer_digest(
    entries: Sequence[TarEntry], mtime: int = 0, cache: LayerCache | None = None
) -> tuple[str, int]:
    """(digest, size) of the layer; with a cache, unchanged files are not read at all."""
    key = layer_key(entries, mtime) if cache is not None else []
    if cache is not None:
        hit = cache.get(key)
        if isinstance(hit, list) and len(hit) == 2:
            return str(hit[0]), int(hit[1])
    found, size = digest.of_chunks(tar_chunks(entries, mtime))
    if cache is not None:
        cache.put(key, [found, size], stats=[e.stat for e in entries if e.stat is not None])
    return found, size
