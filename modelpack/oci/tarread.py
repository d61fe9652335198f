"""Reading tar streams as they arrive: a file object over chunks (for tarfile), and the one parser of
layer tars (`members`) that extraction (untar.py) and the model signature's hashing both read, so what is
verified is what is written.

The headers are parsed here (`tarfile.TarInfo.frombuf` for one 512-byte block; pax and GNU long names by
hand) and a member's bytes are handed on as slices of the chunks they arrive in: tarfile's stream reader
copied each piece three times, most of a 1 GiB unpack's time beyond the wire's.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO, cast

from modelpack.errors import InputError
from modelpack.oci.tar import BLOCK, CHUNK

_ZERO_BLOCK = bytes(BLOCK)
_MAX_TIME = 1 << 40  # seconds: past any filesystem's range, and os.utime's
_MAX_META = 1 << 20  # a pax header or GNU long name larger than this is not a name: refused
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


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
        """Exactly the next `n` bytes, as slices of the chunks; InputError when the stream ends first (the
        caller reading a member's bytes is outside `members`' own error handling)."""
        while n > 0:
            if not self._fill():
                raise InputError("not a valid tar stream: unexpected end of data")
            take = min(n, len(self._cur) - self._pos)
            yield self._cur[self._pos : self._pos + take]
            self._pos += take
            n -= take

    def skip(self, n: int) -> None:
        for _ in self.pieces(n):
            pass


class Member:
    """One tar member as the header says it (pax and GNU long names applied); `type` is tarfile's flag."""

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


def members(source: Iterable[bytes] | BinaryIO) -> Iterator[tuple[Member, Iterator[memoryview]]]:
    """Each member of a tar stream with an iterator over its bytes (slices of the chunks, valid until the
    next member; what is not read is skipped). The one parser of layers: extraction and the model
    signature's hashing read the same members, so what is verified is what is written. A malformed stream
    raises InputError."""
    stream = _Chunks(_chunked(source))
    try:
        for member in _members(stream):
            body = stream.pieces(member.size) if member.type in FILE_TYPES else iter(())
            yield member, body
            for _ in body:
                pass
            stream.skip((0 if member.type in FILE_TYPES else member.size) + (-member.size % BLOCK))
    except (tarfile.TarError, EOFError) as e:
        raise InputError(f"not a valid tar stream: {e}") from None


def _chunked(source: Iterable[bytes] | BinaryIO) -> Iterable[bytes]:
    if hasattr(source, "read"):  # a file object iterates by lines: read it in chunks instead
        f = cast(BinaryIO, source)
        return iter(lambda: f.read(CHUNK), b"")
    return source


def _members(stream: _Chunks) -> Iterator[Member]:
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
        member = Member(info, pax, long_name, long_link)
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
