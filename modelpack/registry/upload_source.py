"""A one-shot byte stream made re-readable from recent offsets, so an upload from a pipe can still resume.

Resume asks the source for the bytes from the registry's offset again. A file can seek; a stream cannot,
so this keeps the last `keep` bytes it handed out: enough to resend the chunk in flight (the registry has
acknowledged everything before it), in bounded memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from modelpack.errors import RegistryError


class OneShotSource:
    def __init__(self, chunks: Iterable[bytes], keep: int) -> None:
        self._it = iter(chunks)
        self._keep = keep
        self._pieces: deque[tuple[int, bytes]] = deque()  # (stream offset, bytes), oldest first
        self._end = 0  # stream offset just past the last piece pulled

    @property
    def _start(self) -> int:
        return self._pieces[0][0] if self._pieces else self._end

    def open_at(self, offset: int) -> Iterator[bytes]:
        if offset < self._start:
            raise RegistryError(
                f"cannot resend from byte {offset}: the source is a stream and only bytes from "
                f"{self._start} on are still held"
            )
        return self._read_from(offset)

    def _read_from(self, pos: int) -> Iterator[bytes]:
        while True:
            if pos < self._end:
                for start, piece in list(self._pieces):
                    if start <= pos < start + len(piece):
                        out = piece[pos - start :]
                        pos += len(out)
                        yield out
                        break
                continue
            nxt = next(self._it, None)
            if nxt is None:
                return
            if not nxt:
                continue
            self._pieces.append((self._end, bytes(nxt)))
            self._end += len(nxt)
            # Whole pieces are dropped once they lie more than `keep` bytes behind the reader.
            while self._pieces and self._pieces[0][0] + len(self._pieces[0][1]) < pos - self._keep:
                self._pieces.popleft()
