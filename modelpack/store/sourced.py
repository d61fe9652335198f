"""Source-backed blobs: a big layer the store serves from the files it was built from, not from a copy.

A weight layer is its tar header, the weight file's bytes, padding and the end blocks. Copying it into
`blobs/` doubled the disk a model takes and cost a second pass over it. Instead the store keeps a sidecar,
`sourced/sha256/<hex>`, naming the layer's parts: byte runs (headers, padding, end of archive) kept in
the sidecar, and files by absolute path with the stat identity they had when the layer was hashed. Reads
(`LayoutStore.read_blob`, `read_blob_at`) replay the parts; every file's identity is checked before its
first byte and again after its last, so a file edited since the build is refused with one line naming
it, never served as the old layer. Whole-blob reads are also hashed against the digest as they stream,
and every receiver (a registry, a layout's `write_blob`) verifies what it gets: even an edit the stat
identity cannot see (same size, within one timestamp tick) never lands as a wrong blob.

`hash_parts` is the cold build's one read: each file is read once, its own sha256 taken in the reading
thread while a second thread hashes the layer stream (hashlib releases the GIL on large updates, so on two
cores the two digests cost about one).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpack.errors import InputError, StoreError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.filestat import FileStat, shown

SIDECAR_TYPE = mt.SOURCED_BLOB
CHUNK = 4 << 20  # large reads: fewer hand-offs between the two hashing threads
MAX_SIDECAR_BYTES = 1 << 20
REBUILD = "rebuild with modelpack build (or run modelpack gc to drop the stale entry)"


@dataclass(frozen=True)
class FilePart:
    """A file whose bytes are a run of the blob, as it was when the blob was made."""

    path: Path
    stat: FileStat

    @property
    def size(self) -> int:
        return self.stat.size


Part = bytes | FilePart


@dataclass(frozen=True)
class SourcedBlob:
    digest: str
    size: int
    parts: tuple[Part, ...]

    def to_bytes(self) -> bytes:
        return canonical.dumps(
            {
                "mediaType": SIDECAR_TYPE,
                "digest": self.digest,
                "size": self.size,
                "parts": [_part_json(p) for p in self.parts],
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes, dgst: str, where: str) -> SourcedBlob:
        """Parse a sidecar; one that is malformed or does not describe `dgst` raises StoreError."""
        try:
            obj = json.loads(raw)
            parts = tuple(_part_of(p) for p in obj["parts"])
            blob = cls(str(obj["digest"]), int(obj["size"]), parts)
            ok = obj.get("mediaType") == SIDECAR_TYPE and blob.digest == dgst
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok or sum(_size(p) for p in blob.parts) != blob.size:
            raise StoreError(
                f"{where} is not a valid source-backed blob entry for {dgst}",
                hint="run modelpack gc (it drops the entry), then rebuild",
            )
        return blob

    def changed(self) -> str | None:
        """Why the blob cannot be served as recorded (the first file gone or changed), else None."""
        for p in self.parts:
            if isinstance(p, FilePart):
                try:
                    now = FileStat.of(p.path)
                except OSError:
                    return f"{shown(p.path)} is gone"
                if now != p.stat:
                    return f"{shown(p.path)} changed since the build"
        return None

    def check(self) -> None:
        why = self.changed()
        if why is not None:
            raise StoreError(f"blob {self.digest} is served from its source file, but {why}; {REBUILD}")

    def chunks(self, offset: int = 0) -> Iterator[bytes]:
        """The blob's bytes from `offset`, each file checked against its recorded identity as it is read."""
        for p in self.parts:
            n = _size(p)
            if offset >= n:
                offset -= n
                continue
            if isinstance(p, bytes):
                yield p[offset:]
            else:
                for chunk in _file_chunks(p, offset, self.digest):
                    yield bytes(chunk)  # already bytes without a ring: no copy
            offset = 0


Watcher = Callable[[bytes | memoryview], None]  # sees a file's bytes as they are read


def hash_parts(
    parts: Sequence[Part], watch: Sequence[Watcher | None] = ()
) -> tuple[str, int, list[tuple[str, int]]]:
    """(layer digest, layer size, [(file digest, size)] in order) from one read of every file.

    The reading thread hashes each file; a worker hashes the whole stream. Reads go into a small ring of
    reused buffers (fresh 4 MiB allocations would fault in new pages on every read), each reused only
    once the worker is past it: the queue holds at most `depth` chunks and the worker one more.
    `watch[i]`, when given, sees the i-th file's chunks too, in the reading thread (dataset statistics
    counted from the same read); it must not keep them.
    Raises InputError when a file is not, or stops being while read, what its FilePart says."""
    depth = 4
    work: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=depth)
    ring = itertools.cycle([bytearray(CHUNK) for _ in range(depth + 2)])  # one turn across all files
    layer = hashlib.sha256()

    def hash_layer() -> None:
        while (chunk := work.get()) is not None:
            layer.update(chunk)

    worker = threading.Thread(target=hash_layer, name="modelpack-layer-hash", daemon=True)
    worker.start()
    files: list[tuple[str, int]] = []
    size = 0
    try:
        for p in parts:
            if isinstance(p, bytes):
                work.put(p)
                size += len(p)
                continue
            h = hashlib.sha256()
            see = watch[len(files)] if len(files) < len(watch) else None
            for chunk in _file_chunks(p, 0, None, ring):
                work.put(chunk)
                h.update(chunk)
                if see is not None:
                    see(chunk)
            files.append(("sha256:" + h.hexdigest(), p.size))
            size += p.size
    finally:
        work.put(None)
        worker.join()
    return "sha256:" + layer.hexdigest(), size, files


def _file_chunks(
    p: FilePart, offset: int, dgst: str | None, ring: Iterator[bytearray] | None = None
) -> Iterator[bytes | memoryview]:
    """`p`'s bytes from `offset`, refused (StoreError for a stored blob, InputError while building) when
    the file is not the one recorded, before its first byte or after its last. With a `ring`, chunks are
    views of its buffers in turn (hash_parts); else fresh bytes a consumer may keep."""

    def refuse(why: str) -> Exception:
        if dgst is None:
            return InputError(f"{shown(p.path)} {why}", hint="wait until whatever writes it has finished")
        return StoreError(f"blob {dgst} is served from {shown(p.path)}, which {why}; {REBUILD}")

    changed = "changed while it was read" if dgst is None else "changed since the build"
    try:
        f = open(p.path, "rb", buffering=0)  # noqa: SIM115 - closed in finally across yields
    except FileNotFoundError:
        raise refuse("is gone" if dgst else "does not exist") from None
    except OSError as e:
        raise refuse(f"cannot be read ({e.strerror})") from None
    try:
        if FileStat.from_stat(os.fstat(f.fileno())) != p.stat:
            raise refuse(changed)
        f.seek(offset)
        left = p.size - offset
        while left:
            if ring is None:
                chunk: bytes | memoryview = f.read(min(CHUNK, left))
            else:
                buf = memoryview(next(ring))[: min(CHUNK, left)]
                chunk = buf[: f.readinto(buf) or 0]
            if not chunk:
                raise refuse(changed)
            left -= len(chunk)
            yield chunk
        if FileStat.from_stat(os.fstat(f.fileno())) != p.stat:
            raise refuse(changed)
    finally:
        f.close()


def _size(p: Part) -> int:
    return len(p) if isinstance(p, bytes) else p.size


def _part_json(p: Part) -> dict[str, object]:
    if isinstance(p, bytes):
        return {"bytes": p.hex()}
    raw = os.fsencode(p.path)
    try:
        where: dict[str, object] = {"path": raw.decode("utf-8")}
    except UnicodeDecodeError:
        where = {"pathBytes": raw.hex()}  # a Linux name that is not UTF-8: JSON cannot hold it as text
    return {**where, "stat": p.stat.key()}


def _part_of(obj: dict[str, object]) -> Part:
    if "bytes" in obj:
        return bytes.fromhex(str(obj["bytes"]))
    if "path" in obj:
        path = Path(str(obj["path"]))
    else:
        path = Path(os.fsdecode(bytes.fromhex(str(obj["pathBytes"]))))
    st = obj["stat"]
    if not (isinstance(st, list) and len(st) == 4 and all(isinstance(v, int) for v in st)):
        raise ValueError("stat")
    if not path.is_absolute():
        raise ValueError("relative path")
    return FilePart(path, FileStat(*st))
