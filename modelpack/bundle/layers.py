"""Writing one planned layer into the store, reading its files at most once.

Warm: the layer's stat-cache key (every entry's header fields and its file's stat identity) names a
digest whose blob the store holds, and the files' own digests are cached too: nothing is read.
Cold, big layer (its files hold at least `SOURCED_MIN` bytes, e.g. a weight file): each file is read
once, its own sha256 and the layer's taken from the same bytes on two threads, and the store keeps a
source-backed entry (store/sourced.py: the tar headers and padding, the files by path and stat identity)
instead of a second copy of the weights. No byte is written.
Cold, small layer (code, docs, configs): the tar stream is hashed as a whole and, file by file, as it is
written to a temp file in the store, which is then renamed to its digest name. One read, one write: a
copy costs nothing here, and keeps the layer valid when the code is edited after the build.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpack.bundle.plan import LARGE_FILE, LayerPlan
from modelpack.oci import digest
from modelpack.oci import mediatypes as mt
from modelpack.oci.filestat import FileStat, file_key
from modelpack.oci.model import Descriptor
from modelpack.oci.tar import TarEntry, header, layer_key, layer_parts, tar_chunks
from modelpack.record.record import FileEntry
from modelpack.store.layout import LayoutStore
from modelpack.store.sourced import FilePart, Part, SourcedBlob, Watcher, hash_parts
from modelpack.store.statcache import StatCache

SOURCED_MIN = LARGE_FILE  # a layer whose files hold this much is kept by reference, not copied


@dataclass(frozen=True)
class StoredLayer:
    descriptor: Descriptor
    files: tuple[FileEntry, ...]  # each file's path in the bundle, sha256 and size, for the record
    reused: bool = False  # answered from the stat cache: no file was read


def _file_key(e: TarEntry) -> list[object]:
    assert e.source is not None and not isinstance(e.source, bytes)
    return ["file-sha256", *file_key(e.source, e.stat or FileStat.of(e.source))]


def store_layer(
    store: LayoutStore,
    cache: StatCache,
    plan: LayerPlan,
    mtime: int,
    watch: Mapping[str, Watcher] | None = None,
) -> StoredLayer:
    """The layer of `plan` in the store. `watch` (by arcname) sees those files' bytes when they are read:
    nothing is seen when the answer comes from the stat cache (`reused`)."""
    watch = watch or {}
    key = layer_key(plan.entries, mtime)
    hit = cache.get(key)
    file_hits = [cache.get(_file_key(e)) if not isinstance(e.source, bytes) else None for e in plan.files]
    if (
        isinstance(hit, list)
        and all(isinstance(h, list) for h in file_hits)
        and store.keep_blob(str(hit[0]))  # refreshed: a concurrent gc's grace period covers it
    ):
        files = tuple(
            FileEntry(e.arcname, str(h[0]), int(h[1]))
            for e, h in zip(plan.files, file_hits, strict=True)
            if isinstance(h, list)
        )
        return StoredLayer(_descriptor(plan, str(hit[0]), int(hit[1])), files, reused=True)

    if sum(e.size for e in plan.files if isinstance(e.source, Path)) >= SOURCED_MIN:
        layer_hash, size, file_digests = _by_reference(store, plan, mtime, watch)
    else:
        layer_hash, size, file_digests = _ingest(store, plan, mtime, watch)
    stats = [e.stat for e in plan.entries if e.stat is not None]
    cache.put(key, [layer_hash, size], stats=stats)
    for e, (d, n) in zip(plan.files, file_digests, strict=True):
        if not isinstance(e.source, bytes) and e.stat is not None:
            cache.put(_file_key(e), [d, n], stats=[e.stat])
    fresh = tuple(FileEntry(e.arcname, d, n) for e, (d, n) in zip(plan.files, file_digests, strict=True))
    return StoredLayer(_descriptor(plan, layer_hash, size), fresh)


def _descriptor(plan: LayerPlan, dgst: str, size: int) -> Descriptor:
    return Descriptor(plan.media_type, dgst, size, annotations={mt.ANN_FILEPATH: plan.filepath})


class _FileHasher:
    """Splits a tar byte stream back into its members' contents, by the sizes the plan knows."""

    def __init__(self, entries: Sequence[TarEntry], mtime: int, watch: Mapping[str, Watcher]) -> None:
        # (bytes to skip before, content size) for each file, in stream order
        self._spans: list[tuple[int, int]] = []
        self._watch: list[Watcher | None] = []
        pending = 0
        for e in sorted(entries, key=lambda x: x.arcname):
            pending += len(header(e, mtime))
            if e.kind == "file":
                self._spans.append((pending, e.size))
                self._watch.append(watch.get(e.arcname))
                pending = -e.size % 512
        self.digests: list[tuple[str, int]] = []
        self._i = 0
        self._skip, self._left = self._spans[0] if self._spans else (0, 0)
        self._h = hashlib.sha256()

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view and self._i < len(self._spans):
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            n = min(self._left, len(view))
            self._h.update(view[:n])
            if (see := self._watch[self._i]) is not None:
                see(view[:n])
            self._left -= n
            view = view[n:]
            if self._left == 0:
                self.digests.append(("sha256:" + self._h.hexdigest(), self._spans[self._i][1]))
                self._h = hashlib.sha256()
                self._i += 1
                if self._i < len(self._spans):
                    self._skip, self._left = self._spans[self._i]


def _ingest(
    store: LayoutStore, plan: LayerPlan, mtime: int, watch: Mapping[str, Watcher]
) -> tuple[str, int, list[tuple[str, int]]]:
    """One pass over the layer: the store hashes and writes it (under its writer lock) while the file
    hasher takes each member's own digest from the same bytes."""
    files = _FileHasher(plan.entries, mtime, watch)

    def stream() -> Iterator[bytes]:
        for chunk in tar_chunks(plan.entries, mtime):
            files.feed(chunk)
            yield chunk

    dgst, size = store.ingest(stream())
    return dgst, size, files.digests


def _by_reference(
    store: LayoutStore, plan: LayerPlan, mtime: int, watch: Mapping[str, Watcher]
) -> tuple[str, int, list[tuple[str, int]]]:
    """One read of each file for both digests; the store records the layer as its parts, copying nothing."""
    parts: list[Part] = []
    watchers: list[Watcher | None] = []
    for p in layer_parts(plan.entries, mtime):
        if isinstance(p, bytes):
            parts.append(p)
        else:
            assert isinstance(p.source, Path)
            parts.append(FilePart(Path(os.path.abspath(p.source)), p.stat or FileStat.of(p.source)))
            watchers.append(watch.get(p.arcname))
    dgst, size, read = hash_parts(parts, watchers)
    store.put_sourced(SourcedBlob(dgst, size, tuple(parts)))
    found = iter(read)  # in stream order (by name), as _FileHasher gives them
    in_memory = {e.arcname: e.source for e in plan.files if isinstance(e.source, bytes)}
    file_digests = [
        (digest.of_bytes(data), len(data)) if (data := in_memory.get(e.arcname)) is not None else next(found)
        for e in sorted(plan.files, key=lambda x: x.arcname)
    ]
    return dgst, size, file_digests
