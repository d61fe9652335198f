"""A one-shot byte stream made re-readable from recent offsets, so an upload from a pipe can still resume.

Resume asks the source for the bytes from the registry's offset again. A file can seek; a stream cannot,
so this keeps the last `keep` bytes it handed out: enough to resend the chunk in flight (the registry has
acknowledged everything before it), in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from modelpack.errors import RegistryError

PIECE = 1 << 20


class OneShotSource:
    def __init__(self, chunks: Iterable[bytes], keep: int) -> None:
        self._it = iter(chunks)
        self._keep = keep
        self._buf = bytearray()
        self._buf_start = 0  # stream offset of _buf[0]

    def open_at(self, offset: int) -> Iterator[bytes]:
        if offset < self._buf_start:
            raise RegistryError(
                f"cannot resend from byte {offset}: the source is a stream and only bytes from "
                f"{self._buf_start} on are still held"
            )
        return self._read_from(offset)

    def _read_from(self, pos: int) -> Iterator[bytes]:
        while True:
            end = self._buf_start + len(self._buf)
            if pos < end:
                at = pos - self._buf_start
                piece = bytes(self._buf[at : at + PIECE])
                pos += len(piece)
                yield piece
                continue
            nxt = next(self._it, None)
            if nxt is None:
                return
            self._buf += nxt
            drop = (pos - self._buf_start) - self._keep
            if drop > 0:
                del self._buf[:drop]
                self._buf_start += drop


class FileOpener:
    """`open_at` for a file on disk (a LayoutStore blob): seeks, then streams in fixed pieces."""

    def __init__(self, path: str, piece: int = PIECE) -> None:
        self.path = path
        self.piece = piece

    def __call__(self, offset: int) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(offset)
            while True:
                data = f.read(self.piece)
                if not data:
                    return
                yield data
