"""Parallel ranged download of a large blob, handed on in order so it is hashed once as it streams.

A CDN-backed registry caps each connection; a blob of at least `RangeOptions.min_size` bytes (64 MiB) is
therefore fetched as 8 MiB ranges over 4 connections at once. The pieces are handed on in blob order, so the
digest check and the writer downstream see one ordinary stream: no temp file and no second pass over the
bytes. Memory is bounded: a piece is fetched only while it is fewer than `window` pieces ahead of the one
being handed on (8 MiB pieces, window 6: at most 56 MiB held, the piece being handed on included,
whatever the blob's size).

That in-order hand-on is for consumers of a stream (an unpack writing a tar straight into a folder).
A pull into the store has a file: `fetch_ranged_into` writes each range at its offset as it arrives
(os.pwrite) and the store hashes just behind the contiguous prefix, reading back from the page cache, so
no piece waits in memory for the ones before it (the hand-on peaked at 212 MiB on an 8 GiB pull under
load, bench/README.md).

The first 4 MiB are the probe, a ranged GET read as one stream: a 200 is the whole blob, read on as that
one stream with the usual resume; a 206 says the registry serves ranges, and the probe's speed decides.
A connection faster than 100 MB/s (loopback, a LAN) outruns what the consumer does with the bytes on its
own, so the rest comes in one stream too: extra connections would only add threads competing for the same
cores (on loopback, 4 ranges cost 0.34 s of CPU per 128 MiB pulled into the store, one stream 0.26-0.30).
A slower one gets the pieces. Every piece resumes its own range when its connection tears
(download.iter_blob). With a Verifier, the hash runs in a thread of its own, one piece
behind the network and one ahead of the consumer, so it overlaps the consumer's own work (the store's
write, which hashes again).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx

from modelpack.errors import RegistryError
from modelpack.oci.digest import Verifier
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Advanced
from modelpack.registry.download import iter_blob, request_blob, serves_ranges
from modelpack.registry.transport import RegistryClient

log = logging.getLogger("modelpack.registry")


@dataclass(frozen=True)
class RangeOptions:
    min_size: int = 64 << 20  # smaller blobs come in one stream: a few round trips would cost more
    piece: int = 8 << 20
    workers: int = 4
    window: int = 6  # pieces held or in flight ahead of the consumer: the memory bound
    probe: int = 4 << 20  # read first, in one stream, and timed
    one_stream_rate: float = 100e6  # bytes/s: a probe this fast means the rest comes in one stream too


# A worker notices a stop between chunks; one stuck on a stalled connection is left to its timeout.
STOP_WAIT = 5.0

# Pieces held ahead of their consumer, across every blob this process downloads at once (a pull copies
# 4 blobs in parallel: 4 windows of 6 x 8 MiB were 190 MiB of RSS). A blob's head piece, the one its
# consumer waits for, needs no slot, so every download can always move on: memory stays under
# (SHARED_PIECES + blobs at once) x piece, whatever the sizes (issue 26 item 3).
SHARED_PIECES = 6
_shared = threading.BoundedSemaphore(SHARED_PIECES)


def iter_blob_ranged(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    start: int = 0,
    *,
    verifier: Verifier | None = None,
    options: RangeOptions = RangeOptions(),
) -> Generator[bytes, None, None]:
    """The blob's bytes from `start` on, in order; with `verifier`, hashed and checked at the end."""
    if desc.size - start < max(options.min_size, 2 * options.piece) or options.workers < 2:
        yield from _single(iter_blob(client, repository, desc, start), verifier)
        return
    probe_end = min(desc.size, start + options.probe)
    first = request_blob(client, repository, desc, start, probe_end)
    if not serves_ranges(first):
        log.debug("ranged GET of %s answered %d: one stream", desc.digest, first.status_code)
        yield from _single(iter_blob(client, repository, desc, start, first=first), verifier)
        return
    # The probe's bytes, timed from its first chunk on (a connection's rate, not the registry's time to
    # answer) and without the consumer's own work in between.
    probe = iter_blob(client, repository, desc, start, end=probe_end, first=first)
    waited, counted = 0.0, 0
    try:
        chunk = next(probe, None)
        while chunk is not None:
            if verifier is not None:
                verifier.update(chunk)
            yield chunk
            began = time.monotonic()
            chunk = next(probe, None)
            waited += time.monotonic() - began
            counted += len(chunk or b"")
    finally:
        probe.close()
    if probe_end >= desc.size:
        if verifier is not None:
            verifier.check()
        return
    rate = counted / max(waited, 1e-6)
    log.debug("probe of %s: %.0f MB/s", desc.digest, rate / 1e6)
    if rate >= options.one_stream_rate:
        # One connection outruns what the consumer does with the bytes (loopback, a LAN): more
        # connections would only add threads and requests competing for the same cores.
        yield from _single(iter_blob(client, repository, desc, probe_end), verifier)
        return
    yield from _Pieces(client, repository, desc, probe_end, options, verifier, None).run()


def _single(chunks: Generator[bytes, None, None], verifier: Verifier | None) -> Generator[bytes, None, None]:
    try:
        for chunk in chunks:
            if verifier is not None:
                verifier.update(chunk)
            yield chunk
    finally:
        chunks.close()
    if verifier is not None:
        verifier.check()


class _Pieces:
    """Pieces `[start + i * piece, ...)`: fetched by workers, hashed in order, handed on in order."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        desc: Descriptor,
        start: int,
        options: RangeOptions,
        verifier: Verifier | None,
        first: httpx.Response | None,
    ) -> None:
        self.client, self.repository, self.desc = client, repository, desc
        self.start, self.piece, self.verifier = start, options.piece, verifier
        self.workers, self.window = options.workers, max(options.window, options.workers)
        self.count = -(-(desc.size - start) // self.piece)
        self.cond = threading.Condition()
        self.fetched: dict[int, list[bytes]] = {}
        self.failed: dict[int, BaseException] = {}
        self.hashed = -1  # the last piece the verifier has seen
        self.next = 0  # the next piece a worker takes
        self.head = 0  # the piece being handed on
        self.stopped = False
        self.first: httpx.Response | None = first  # the probe's answer: piece 0's body
        self.slots: set[int] = set()  # pieces holding a slot of _shared, given back when handed on

    def bounds(self, i: int) -> tuple[int, int]:
        begin = self.start + i * self.piece
        return begin, min(self.desc.size, begin + self.piece)

    def run(self) -> Generator[bytes, None, None]:
        threads = [
            threading.Thread(target=self._work, daemon=True, name=f"modelpack-range-{n}")
            for n in range(min(self.workers, self.count))
        ]
        if self.verifier is not None:
            threads.append(threading.Thread(target=self._hash, daemon=True, name="modelpack-range-hash"))
        for t in threads:
            t.start()
        try:
            for i in range(self.count):
                with self.cond:
                    while i not in self.failed and not self._ready(i):
                        self.cond.wait()
                    if i in self.failed:
                        raise self.failed[i]
                    chunks = self.fetched.pop(i)
                    self._give_back(i)
                    self.head = i + 1
                    self.cond.notify_all()
                yield from chunks
                del chunks  # not held while waiting for the next piece
            if self.verifier is not None:
                self.verifier.check()
        finally:
            with self.cond:
                self.stopped = True
                self.cond.notify_all()
            for t in threads:
                t.join(STOP_WAIT)
            with self.cond:
                for held in list(self.slots):
                    self._give_back(held)
            with self.cond:
                first, self.first = self.first, None
            if first is not None:
                first.close()

    def _ready(self, i: int) -> bool:
        return i in self.fetched and (self.verifier is None or self.hashed >= i)

    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.stopped and self.next < self.count and self.next >= self.head + self.window:
                    self.cond.wait()
                if self.stopped or self.next >= self.count:
                    return
                i, self.next = self.next, self.next + 1
            if not self._take_slot(i):
                return
            try:
                chunks = self._fetch(i)
            except BaseException as e:  # handed to the consumer, raised in its thread
                with self.cond:
                    self.failed[i] = e
                    self.cond.notify_all()
                return
            if chunks is None:
                return
            with self.cond:
                self.fetched[i] = chunks
                self.cond.notify_all()
            # Drop this thread's reference: it would keep the piece alive, after the consumer is done
            # with it, for as long as this worker waits for its next one (4 workers x 4 blobs x 8 MiB).
            del chunks

    def _take_slot(self, i: int) -> bool:
        """A shared slot for piece `i`, or none once `i` is the head; False when stopped meanwhile."""
        while True:
            with self.cond:
                if self.stopped:
                    return False
                if i <= self.head:
                    return True
            if _shared.acquire(timeout=0.05):
                with self.cond:
                    if self.stopped:
                        _shared.release()
                        return False
                    self.slots.add(i)
                return True

    def _give_back(self, i: int) -> None:
        """Release piece `i`'s slot, if it holds one (caller holds self.cond)."""
        if i in self.slots:
            self.slots.discard(i)
            _shared.release()

    def _fetch(self, i: int) -> list[bytes] | None:
        begin, end = self.bounds(i)
        first = None
        if i == 0:
            with self.cond:
                first, self.first = self.first, None
        got: list[bytes] = []
        n = 0
        stream = iter_blob(self.client, self.repository, self.desc, begin, end=end, first=first)
        try:
            for chunk in stream:
                if self.stopped:
                    return None
                got.append(chunk)
                n += len(chunk)
        finally:
            stream.close()
        if n != end - begin:
            raise RegistryError(
                f"blob {self.desc.digest} in {self.client.registry}/{self.repository}: the range "
                f"{begin}-{end - 1} came with {n} bytes; refused"
            )
        return got

    def _hash(self) -> None:
        assert self.verifier is not None
        for i in range(self.count):
            with self.cond:
                while not self.stopped and i not in self.fetched and i not in self.failed:
                    self.cond.wait()
                if self.stopped or i in self.failed:
                    return
                chunks = self.fetched[i]
            try:
                for chunk in chunks:
                    self.verifier.update(chunk)
                del chunks  # not held while waiting for the next piece
            except BaseException as e:
                with self.cond:
                    self.failed[i] = e
                    self.cond.notify_all()
                return
            with self.cond:
                self.hashed = i
                self.cond.notify_all()


def fetch_ranged_into(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    fd: int,
    start: int,
    advanced: Advanced,
    *,
    options: RangeOptions = RangeOptions(),
) -> None:
    """The blob's bytes from `start` on, written into `fd` at their offsets: one stream as in
    iter_blob_ranged, or parallel ranges each written as it arrives (os.pwrite), so nothing waits in
    memory for the pieces before it (the in-memory hand-on peaked at 212 MiB on an 8 GiB pull,
    bench/README.md). `advanced` runs in the caller's thread as the contiguous prefix grows; unverified
    here: the caller hashes behind that prefix."""
    if desc.size - start < max(options.min_size, 2 * options.piece) or options.workers < 2:
        _stream_into(iter_blob(client, repository, desc, start), fd, start, advanced)
        return
    probe_end = min(desc.size, start + options.probe)
    first = request_blob(client, repository, desc, start, probe_end)
    if not serves_ranges(first):
        _stream_into(iter_blob(client, repository, desc, start, first=first), fd, start, advanced)
        return
    probe = iter_blob(client, repository, desc, start, end=probe_end, first=first)
    waited, counted, at = 0.0, 0, start
    try:
        chunk = next(probe, None)
        while chunk is not None:
            at = _pwrite(fd, chunk, at)
            advanced(at, chunk)
            began = time.monotonic()
            chunk = next(probe, None)
            waited += time.monotonic() - began
            counted += len(chunk or b"")
    finally:
        probe.close()
    if probe_end >= desc.size:
        return
    if counted / max(waited, 1e-6) >= options.one_stream_rate:
        _stream_into(iter_blob(client, repository, desc, probe_end), fd, probe_end, advanced)
        return
    _Writers(client, repository, desc, probe_end, options, fd).run(advanced)


def _pwrite(fd: int, data: bytes, at: int) -> int:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n
    return at


def _stream_into(chunks: Generator[bytes, None, None], fd: int, at: int, advanced: Advanced) -> None:
    try:
        for chunk in chunks:
            at = _pwrite(fd, chunk, at)
            advanced(at, chunk)
    finally:
        chunks.close()


class _Writers:
    """Pieces `[start + i * piece, ...)` fetched by workers and written at their offsets as they arrive;
    a worker starts a piece only while it is fewer than `window` pieces past the contiguous prefix, so an
    interrupted pull leaves few holes behind the prefix the caller keeps."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        desc: Descriptor,
        start: int,
        options: RangeOptions,
        fd: int,
    ) -> None:
        self.client, self.repository, self.desc, self.fd = client, repository, desc, fd
        self.start, self.piece = start, options.piece
        self.workers, self.window = options.workers, max(options.window, options.workers)
        self.count = -(-(desc.size - start) // self.piece)
        self.cond = threading.Condition()
        self.done: set[int] = set()
        self.failed: dict[int, BaseException] = {}
        self.next = 0
        self.head = 0  # the first piece not yet written whole: the contiguous prefix ends at its start
        self.stopped = False

    def bounds(self, i: int) -> tuple[int, int]:
        begin = self.start + i * self.piece
        return begin, min(self.desc.size, begin + self.piece)

    def run(self, advanced: Advanced) -> None:
        threads = [
            threading.Thread(target=self._work, daemon=True, name=f"modelpack-range-{n}")
            for n in range(min(self.workers, self.count))
        ]
        for t in threads:
            t.start()
        try:
            while True:
                with self.cond:
                    while self.head not in self.failed and self.head not in self.done:
                        self.cond.wait()
                    if self.head in self.failed:
                        raise self.failed[self.head]
                    while self.head in self.done:
                        self.done.discard(self.head)
                        self.head += 1
                    head = self.head
                    self.cond.notify_all()
                advanced(self.bounds(head - 1)[1], None)
                if head >= self.count:
                    return
        finally:
            with self.cond:
                self.stopped = True
                self.cond.notify_all()
            for t in threads:
                t.join(STOP_WAIT)

    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.stopped and self.next < self.count and self.next >= self.head + self.window:
                    self.cond.wait()
                if self.stopped or self.next >= self.count:
                    return
                i, self.next = self.next, self.next + 1
            try:
                complete = self._fetch(i)
            except BaseException as e:  # raised in the consumer's thread when it reaches piece i
                with self.cond:
                    self.failed[i] = e
                    self.cond.notify_all()
                return
            if not complete:
                return
            with self.cond:
                self.done.add(i)
                self.cond.notify_all()

    def _fetch(self, i: int) -> bool:
        begin, end = self.bounds(i)
        at = begin
        stream = iter_blob(self.client, self.repository, self.desc, begin, end=end)
        try:
            for chunk in stream:
                if self.stopped:
                    return False
                if at + len(chunk) > end:
                    break
                at = _pwrite(self.fd, chunk, at)
        finally:
            stream.close()
        if at != end:
            raise RegistryError(
                f"blob {self.desc.digest} in {self.client.registry}/{self.repository}: the range "
                f"{begin}-{end - 1} came with a different length; refused"
            )
        return True
