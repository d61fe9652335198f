"""The blob half of the local store (an OCI image layout): `blobs/<alg>/<hex>`, source-backed blobs, locks.

Crash and concurrency safety:
- A blob is written under `blobs/.tmp/`, verified, fsynced and renamed to its digest name: a crash leaves
  at worst a temp file, never a half blob under a digest; a digest or size mismatch keeps nothing.
- Blob writes hold a shared flock on `.gc.lock`; gc holds it exclusively (see store/gc.py for its rule).

Big layers built from files on this machine are source-backed (store/sourced.py): `sourced/sha256/<hex>`
names the files they are made of instead of a copy under `blobs/`. `has_blob`, `read_blob`,
`read_blob_at`, `read_blob_bytes` and `copy_blob_from` serve them like any blob (other layouts and
registries receive real bytes); a source changed since the build is refused with one line naming it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from modelpack.errors import DigestMismatchError, NotFoundError, StoreError
from modelpack.oci import canonical, digest, mediatypes
from modelpack.oci.model import Descriptor, Index
from modelpack.oci.target import BlobCopy, Progress, ProgressFn, Target, WritesAtOffsets, no_progress
from modelpack.store import sourced
from modelpack.store.atomic import atomic_write, fsync_dir, space
from modelpack.store.sourced import SourcedBlob
from modelpack.store.statcache import StatCache

LAYOUT_VERSION = "1.0.0"
TMP_DIR = ".tmp"
INDEX_LOCK = ".index.lock"
GC_LOCK = ".gc.lock"
# What a half-created layout may hold: anything else in a folder without oci-layout is someone else's.
_OWN_NAMES = frozenset({"blobs", "index.json", "oci-layout", "cache", "sourced", INDEX_LOCK, GC_LOCK})


class BlobStore:
    """Blobs of a layout directory, created on the first write; `LayoutStore` adds index.json on top."""

    def __init__(self, root: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self._clock = clock

    # -- paths and setup ---------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"oci:{self.root}"

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    @property
    def stat_cache_path(self) -> Path:
        """Where the bundle builder keeps its stat cache for this store (outside the OCI layout proper)."""
        return self.root / "cache" / "stat.sqlite"

    def stat_cache(self) -> StatCache:
        return StatCache(self.stat_cache_path)

    def blob_path(self, dgst: str) -> Path:
        algorithm, hexpart = digest.validate(dgst).split(":", 1)
        return self.root / "blobs" / algorithm / hexpart

    def sourced_path(self, dgst: str) -> Path:
        """Where a source-backed blob's entry lives (store/sourced.py); outside `blobs/`, which others
        read."""
        algorithm, hexpart = digest.validate(dgst).split(":", 1)
        return self.root / "sourced" / algorithm / hexpart

    def _ensure(self) -> None:
        if (self.root / "oci-layout").is_file() and self.index_path.is_file():
            return
        if (
            self.root.is_dir()
            and not (self.root / "oci-layout").exists()
            and any(not _own(p.name) for p in self.root.iterdir())
        ):
            raise StoreError(
                f"{self.root} is a non-empty folder but not an OCI layout",
                hint="point oci: at an empty or new folder",
            )
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store {self.root}: {e.strerror}") from None
        with self.lock(INDEX_LOCK):
            if not (self.root / "oci-layout").is_file():
                atomic_write(
                    self.root / "oci-layout", canonical.dumps({"imageLayoutVersion": LAYOUT_VERSION})
                )
            if not self.index_path.is_file():
                atomic_write(self.index_path, Index(manifests=()).to_bytes())

    @contextmanager
    def lock(self, name: str, shared: bool = False, blocking: bool = True) -> Iterator[None]:
        """flock on a file of its own: each call opens it anew, so threads exclude each other too."""
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                raise StoreError(
                    f"the store {self.root} is busy: another modelpack process is writing to it",
                    hint="run the command again when it has finished",
                ) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def ensure(self) -> None:
        """Create the store, or refuse a folder that is not one, before anything is written into it."""
        self._ensure()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held by every writer for the whole of its write (a build, from its first layer to its tag): gc
        takes the same lock exclusively and without waiting, so it refuses rather than collect a blob a
        manifest about to be written will name (store/gc.py)."""
        self._ensure()
        with self.lock(GC_LOCK, shared=True):
            yield

    def keep_blob(self, dgst: str) -> bool:
        """A blob a new manifest will reuse: refresh its age (a concurrent gc's grace period then covers it);
        False when it is not there (the caller writes it)."""
        with self.writing():
            try:
                os.utime(self.blob_path(dgst))
                return True
            except FileNotFoundError:
                pass
            try:
                entry = self.sourced(dgst)
            except StoreError:
                return False  # a damaged entry: the caller writes the layer again, which replaces it
            if entry is None or entry.changed() is not None:
                return False
            os.utime(self.sourced_path(dgst))
            return True

    def sourced(self, dgst: str) -> SourcedBlob | None:
        """The source-backed entry for `dgst`, None when there is none; a damaged one raises StoreError."""
        path = self.sourced_path(dgst)
        try:
            with open(path, "rb") as f:
                raw = f.read(sourced.MAX_SIDECAR_BYTES + 1)
        except FileNotFoundError:
            return None
        return SourcedBlob.from_bytes(raw, dgst, str(path))

    def put_sourced(self, entry: SourcedBlob) -> None:
        """Keep a layer as the files it is made of instead of a copy; a real blob already there wins."""
        with self.writing():
            final = self.blob_path(entry.digest)
            if final.is_file():
                os.utime(final)
                return
            path = self.sourced_path(entry.digest)
            path.parent.mkdir(parents=True, exist_ok=True)
            with space(path):
                atomic_write(path, entry.to_bytes())

    def blob_file(self, dgst: str) -> Path:
        """A real file holding the blob, for a reader that needs a path (the Docker build context): a
        source-backed blob is copied into `blobs/` first (its source checked, its digest verified)."""
        path = self.blob_path(dgst)
        if not path.is_file() and (entry := self.sourced(dgst)) is not None:
            entry.check()
            desc = Descriptor(mediatypes.OCTET_STREAM, dgst, entry.size)
            self._write_blob(desc, entry.chunks(), no_progress, keep_sourced=False)
        return path

    def ingest(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store a blob whose digest is known only at its end (a layer streamed as it is made); returns
        (digest, size). Written to a temp file under the writer lock, fsynced, then renamed."""
        with self.writing():
            tmp_dir = self.root / "blobs" / TMP_DIR
            tmp_dir.mkdir(exist_ok=True)
            tmp = tmp_dir / f"ingest-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            h = hashlib.sha256()
            size = 0
            try:
                with space(tmp), open(tmp, "wb") as f:
                    for chunk in chunks:
                        h.update(chunk)
                        f.write(chunk)
                        size += len(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                dgst = "sha256:" + h.hexdigest()
                final = self.blob_path(dgst)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                self.sourced_path(dgst).unlink(missing_ok=True)  # the real bytes replace an entry
            finally:
                if tmp.exists():
                    tmp.unlink()
        return dgst, size

    # -- blobs -------------------------------------------------------------------------------------------

    def has_blob(self, dgst: str) -> bool:
        """True for a blob file or a source-backed blob whose files are unchanged; one whose source changed
        raises StoreError naming the file (a push or pull stops there, before any byte moves)."""
        if self.blob_path(dgst).is_file():
            return True
        entry = self.sourced(dgst)
        if entry is None:
            return False
        entry.check()
        return True

    def has_usable_blob(self, dgst: str) -> bool:
        """`has_blob` for a writer: a source-backed entry whose file changed is absent, since the bytes
        being written replace it (a pull after the weights were edited restores the release)."""
        try:
            return self.has_blob(dgst)
        except StoreError:
            return False

    def write_blob(
        self, desc: Descriptor, chunks: Iterable[bytes], progress: ProgressFn = no_progress
    ) -> None:
        self._write_blob(desc, chunks, progress, keep_sourced=True)

    def _write_blob(
        self, desc: Descriptor, chunks: Iterable[bytes], progress: ProgressFn, *, keep_sourced: bool
    ) -> None:
        self._ensure()
        final = self.blob_path(desc.digest)
        with self.lock(GC_LOCK, shared=True):
            if final.is_file() and final.stat().st_size == desc.size:
                # Refresh its age so a concurrent gc's grace period covers the manifest about to use it.
                os.utime(final)
                progress(Progress(desc.digest, desc.size, desc.size, "skip"))
                return
            if keep_sourced and self._fresh_sourced(desc):
                os.utime(self.sourced_path(desc.digest))
                progress(Progress(desc.digest, desc.size, desc.size, "skip"))
                return
            tmp_dir = self.root / "blobs" / TMP_DIR
            tmp_dir.mkdir(exist_ok=True)
            tmp = tmp_dir / f"{digest.hex_part(desc.digest)[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            verifier = digest.Verifier(desc.digest, desc.size, what=f"blob {desc.digest}")
            try:
                with space(final), open(tmp, "wb") as f:
                    for chunk in chunks:
                        verifier.update(chunk)
                        f.write(chunk)
                        progress(Progress(desc.digest, verifier.size, desc.size))
                    verifier.check()
                    f.flush()
                    os.fsync(f.fileno())
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                fsync_dir(final.parent)
                self.sourced_path(desc.digest).unlink(missing_ok=True)  # the real bytes replace it
            finally:
                if tmp.exists():
                    tmp.unlink()

    def _fresh_sourced(self, desc: Descriptor) -> bool:
        try:
            entry = self.sourced(desc.digest)
        except StoreError:
            return False
        return entry is not None and entry.size == desc.size and entry.changed() is None

    def put_blob_bytes(self, data: bytes, media_type: str = mediatypes.OCTET_STREAM) -> Descriptor:
        desc = Descriptor.of(media_type, data)
        self.write_blob(desc, [data])
        return desc

    @contextmanager
    def read_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        verifier = digest.Verifier(desc.digest, desc.size, what=f"blob {desc.digest} in {self.root}")
        try:
            f = open(self.blob_path(desc.digest), "rb")  # noqa: SIM115 - closed when the context exits
        except FileNotFoundError:
            yield _verified(self._sourced_chunks(desc.digest, 0), verifier)
            return
        try:
            yield _verified(iter(lambda: f.read(digest.CHUNK), b""), verifier)
        finally:
            f.close()

    def read_blob_at(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        try:
            f = open(self.blob_path(desc.digest), "rb")  # noqa: SIM115 - closed when the generator ends
        except FileNotFoundError:
            yield from self._sourced_chunks(desc.digest, offset)
            return
        with f:
            f.seek(offset)
            while chunk := f.read(digest.CHUNK):
                yield chunk

    def _sourced_chunks(self, dgst: str, offset: int) -> Iterator[bytes]:
        """A source-backed blob's bytes, its files checked first (so nothing is sent for a changed one)."""
        entry = self.sourced(dgst)
        if entry is None:
            raise NotFoundError(f"blob {dgst} is not in {self.describe()}")
        entry.check()
        return entry.chunks(offset)

    def copy_blob_from(
        self, sources: Sequence[Target], desc: Descriptor, progress: ProgressFn = no_progress
    ) -> BlobCopy:
        if self.has_usable_blob(desc.digest):
            progress(Progress(desc.digest, desc.size, desc.size, "skip"))
            return BlobCopy("skip", desc.digest, 0)
        # read unverified: the write checks the digest as it writes, and a second hash of the same
        # stream on the reading side cost 0.6 s of CPU per GiB of every pull (bench/README.md)
        return BlobCopy("upload", desc.digest, self._write_resumable(desc, sources[0], progress))

    def _write_resumable(self, desc: Descriptor, source: Target, progress: ProgressFn) -> int:
        """Write a blob from `source`, resuming what an interrupted copy of it left; returns the bytes read
        from the source.

        The bytes land in `blobs/.tmp/partial-<hex>` (one per digest, held by an flock while written).
        An interrupted pull (Ctrl-C, a dropped network, a killed process) leaves it; the next copy hashes
        it again from disk and asks the source only for the rest (a Range GET from a registry). A digest
        mismatch at the end discards it (a machine crash may have left a torn tail), so the blob still
        appears under its name only verified; `modelpack gc` removes partials like every temp file."""
        self._ensure()
        final = self.blob_path(desc.digest)
        with self.lock(GC_LOCK, shared=True):
            tmp_dir = self.root / "blobs" / TMP_DIR
            tmp_dir.mkdir(exist_ok=True)
            part = tmp_dir / f"partial-{digest.hex_part(desc.digest)}"
            with open(os.open(part, os.O_RDWR | os.O_CREAT, 0o644), "r+b") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another process is copying this blob now: write our own copy
                    self._write_blob(desc, source.read_blob_at(desc, 0), progress, keep_sourced=True)
                    return desc.size
                if final.is_file() and final.stat().st_size == desc.size:  # it landed while we waited
                    progress(Progress(desc.digest, desc.size, desc.size, "skip"))
                    return 0
                verifier = digest.Verifier(desc.digest, desc.size, what=f"blob {desc.digest}")
                have = _rehash(f, verifier, desc.size)
                progress(Progress(desc.digest, have, desc.size))
                try:
                    with space(final):
                        if have < desc.size and isinstance(source, WritesAtOffsets):
                            _fetch_into(source, desc, f, have, verifier, progress)
                        else:
                            for chunk in source.read_blob_at(desc, have) if have < desc.size else ():
                                verifier.update(chunk)
                                f.write(chunk)
                                progress(Progress(desc.digest, verifier.size, desc.size))
                        verifier.check()
                        f.flush()
                        os.fsync(f.fileno())
                except DigestMismatchError:
                    part.unlink(missing_ok=True)  # wrong bytes (here or from the source): start afresh
                    raise
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, final)
                fsync_dir(final.parent)
                self.sourced_path(desc.digest).unlink(missing_ok=True)  # the real bytes replace it
                return desc.size - have

    def read_blob_bytes(self, dgst: str, max_size: int | None = None) -> bytes:
        path = self.blob_path(dgst)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            entry = self.sourced(dgst)
            if entry is None:
                raise NotFoundError(f"blob {dgst} is not in {self.describe()}") from None
            size = entry.size
        if max_size is not None and size > max_size:
            raise StoreError(f"blob {dgst} in {self.root} is {size} bytes, over the {max_size}-byte limit")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b"".join(self._sourced_chunks(dgst, 0))
        verifier = digest.Verifier(dgst, what=f"blob {dgst} in {self.root}")
        verifier.update(data)
        verifier.check()
        return data


def _fetch_into(
    source: WritesAtOffsets,
    desc: Descriptor,
    f: BinaryIO,
    have: int,
    verifier: digest.Verifier,
    progress: ProgressFn,
) -> None:
    """Let `source` write the rest at its offsets (parallel ranges land as they arrive) and hash just
    behind the contiguous prefix, reading back from the file (page cache) what was not handed over in
    order. Interrupted, the partial is cut to the hashed prefix, so the next pull resumes from there."""
    fd = f.fileno()

    def advanced(end: int, data: bytes | None) -> None:
        if data is not None and end - len(data) == verifier.size:
            verifier.update(data)
        while verifier.size < end:
            piece = os.pread(fd, min(digest.CHUNK, end - verifier.size), verifier.size)
            if not piece:
                raise StoreError(f"partial file of blob {desc.digest} ended before byte {end}")
            verifier.update(piece)
        progress(Progress(desc.digest, verifier.size, desc.size))

    try:
        source.fetch_blob_into(desc, fd, have, advanced)
    except BaseException:
        os.ftruncate(fd, verifier.size)  # holes past the prefix would read as zeros on the next run
        raise


def _rehash(f: BinaryIO, verifier: digest.Verifier, size: int) -> int:
    """Feed what a partial file holds (at most `size` bytes) to `verifier`; cut anything past it and
    leave `f` at its end. Returns how many bytes it holds."""
    have = min(os.fstat(f.fileno()).st_size, size)
    f.seek(0)
    done = 0
    while done < have and (chunk := f.read(min(digest.CHUNK, have - done))):
        verifier.update(chunk)
        done += len(chunk)
    f.truncate(done)
    f.seek(done)
    return done


def _own(name: str) -> bool:
    return name in _OWN_NAMES or name.startswith((".index.json.", ".oci-layout."))  # temps of _atomic_write


def _verified(chunks: Iterator[bytes], verifier: digest.Verifier) -> Iterator[bytes]:
    for chunk in chunks:
        verifier.update(chunk)
        yield chunk
    verifier.check()
