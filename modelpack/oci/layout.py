"""The local store: an OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`).

Any tool that reads OCI layouts (skopeo `oci:DIR:TAG`, oras, crane) reads what we write. Tags are
`org.opencontainers.image.ref.name` annotations on index.json entries, one entry per tag. Referrers (manifests
with a `subject`) put by digest get an untagged index.json entry so they can be found and are kept by gc.
A manifest may name blobs the store does not hold: a serving image's base layers stay in the base image's
repository and are never pulled here (the copy engine finds them through its fallbacks).

Crash and concurrency safety:
- A blob is written under `blobs/.tmp/`, verified, fsynced and renamed to its digest name: a crash leaves
  at worst a temp file, never a half blob under a digest; a digest or size mismatch keeps nothing.
- index.json is rewritten whole (temp + fsync + rename) while holding an exclusive flock on
  `.index.lock`, so concurrent writers (threads or processes) never lose each other's tags and readers
  always see a complete file.
- Blob writes hold a shared flock on `.gc.lock`; gc holds it exclusively (see oci/gc.py for its rule).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from modelpack.errors import DigestMismatchError, ModelpackError, NotFoundError, StoreError, UsageError
from modelpack.oci import canonical, digest, gc, mediatypes
from modelpack.oci.gc import GcResult
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor, Index, Manifest, parse
from modelpack.oci.statcache import StatCache
from modelpack.oci.target import BlobCopy, Progress, ProgressFn, RawManifest, Target, no_progress

LAYOUT_VERSION = "1.0.0"
TMP_DIR = ".tmp"
INDEX_LOCK = ".index.lock"
GC_LOCK = ".gc.lock"
# What a half-created layout may hold: anything else in a folder without oci-layout is someone else's.
_OWN_NAMES = frozenset({"blobs", "index.json", "oci-layout", "cache", INDEX_LOCK, GC_LOCK})
# org.opencontainers.image.ref.name grammar (image-spec annotations.md): `name:version` is allowed.
_REF_NAME = re.compile(
    r"^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$"
)


def default_store_path(environ: Mapping[str, str] = os.environ) -> Path:
    """`MODELPACK_STORE`, else `${XDG_DATA_HOME:-~/.local/share}/modelpack/store`."""
    if environ.get("MODELPACK_STORE"):
        return Path(environ["MODELPACK_STORE"]).expanduser()
    base = environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(base).expanduser() / "modelpack" / "store"


def check_tag(tag: str) -> str:
    if not _REF_NAME.match(tag) or len(tag) > 255:
        raise UsageError(
            f"invalid tag {tag!r} for an OCI layout",
            hint="use letters, digits and . _ - : @ + between them, e.g. 1.4.0 or iris:1.4.0",
        )
    return tag


class LayoutStore:
    """An OCI image layout directory implementing the Target protocol. Created on the first write."""

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
        with self._lock(INDEX_LOCK):
            if not (self.root / "oci-layout").is_file():
                _atomic_write(
                    self.root / "oci-layout", canonical.dumps({"imageLayoutVersion": LAYOUT_VERSION})
                )
            if not self.index_path.is_file():
                _atomic_write(self.index_path, Index(manifests=()).to_bytes())

    @contextmanager
    def _lock(self, name: str, shared: bool = False, blocking: bool = True) -> Iterator[None]:
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
        manifest about to be written will name (oci/gc.py)."""
        self._ensure()
        with self._lock(GC_LOCK, shared=True):
            yield

    def keep_blob(self, dgst: str) -> bool:
        """A blob a new manifest will reuse: refresh its age (a concurrent gc's grace period then covers it);
        False when it is not there (the caller writes it)."""
        with self.writing():
            try:
                os.utime(self.blob_path(dgst))
            except FileNotFoundError:
                return False
            return True

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
                with _space(tmp), open(tmp, "wb") as f:
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
            finally:
                if tmp.exists():
                    tmp.unlink()
        return dgst, size

    # -- blobs -------------------------------------------------------------------------------------------

    def has_blob(self, dgst: str) -> bool:
        return self.blob_path(dgst).is_file()

    def write_blob(
        self, desc: Descriptor, chunks: Iterable[bytes], progress: ProgressFn = no_progress
    ) -> None:
        self._ensure()
        final = self.blob_path(desc.digest)
        with self._lock(GC_LOCK, shared=True):
            if final.is_file() and final.stat().st_size == desc.size:
                # Refresh its age so a concurrent gc's grace period covers the manifest about to use it.
                os.utime(final)
                progress(Progress(desc.digest, desc.size, desc.size, "skip"))
                return
            tmp_dir = self.root / "blobs" / TMP_DIR
            tmp_dir.mkdir(exist_ok=True)
            tmp = tmp_dir / f"{digest.hex_part(desc.digest)[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            verifier = digest.Verifier(desc.digest, desc.size, what=f"blob {desc.digest}")
            try:
                with _space(final), open(tmp, "wb") as f:
                    for chunk in chunks:
                        verifier.update(chunk)
                        f.write(chunk)
                        progress(Progress(desc.digest, verifier.size, desc.size))
                    verifier.check()
                    f.flush()
                    os.fsync(f.fileno())
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
            finally:
                if tmp.exists():
                    tmp.unlink()

    def put_blob_bytes(self, data: bytes, media_type: str = "application/octet-stream") -> Descriptor:
        desc = Descriptor.of(media_type, data)
        self.write_blob(desc, [data])
        return desc

    @contextmanager
    def read_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        try:
            f = open(self.blob_path(desc.digest), "rb")  # noqa: SIM115 - closed when the context exits
        except FileNotFoundError:
            raise NotFoundError(f"blob {desc.digest} is not in {self.describe()}") from None
        try:
            yield _verified(
                f, digest.Verifier(desc.digest, desc.size, what=f"blob {desc.digest} in {self.root}")
            )
        finally:
            f.close()

    def read_blob_at(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        try:
            f = open(self.blob_path(desc.digest), "rb")  # noqa: SIM115 - closed when the generator ends
        except FileNotFoundError:
            raise NotFoundError(f"blob {desc.digest} is not in {self.describe()}") from None
        with f:
            f.seek(offset)
            while chunk := f.read(digest.CHUNK):
                yield chunk

    def copy_blob_from(
        self, sources: Sequence[Target], desc: Descriptor, progress: ProgressFn = no_progress
    ) -> BlobCopy:
        if self.has_blob(desc.digest):
            progress(Progress(desc.digest, desc.size, desc.size, "skip"))
            return BlobCopy("skip", desc.digest, 0)
        with sources[0].read_blob(desc) as chunks:
            self.write_blob(desc, chunks, progress)
        return BlobCopy("upload", desc.digest, desc.size)

    def read_blob_bytes(self, dgst: str, max_size: int | None = None) -> bytes:
        path = self.blob_path(dgst)
        try:
            size = path.stat().st_size
            if max_size is not None and size > max_size:
                raise StoreError(
                    f"blob {dgst} in {self.root} is {size} bytes, over the {max_size}-byte limit"
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {dgst} is not in {self.describe()}") from None
        verifier = digest.Verifier(dgst, what=f"blob {dgst} in {self.root}")
        verifier.update(data)
        verifier.check()
        return data

    # -- index.json --------------------------------------------------------------------------------------

    def read_index(self) -> Index:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return Index(manifests=())
        try:
            obj = json.loads(raw)
            return Index.from_json(obj, raw=raw)
        except (ValueError, TypeError, AttributeError) as e:
            raise StoreError(f"{self.index_path} is not a valid OCI index: {e}") from None

    @contextmanager
    def _editing_index(self) -> Iterator[list[Descriptor]]:
        """Yield index.json's entries for in-place edits; written back atomically under the lock."""
        self._ensure()
        with self._lock(INDEX_LOCK):
            current = self.read_index()
            entries = list(current.manifests)
            yield entries
            if entries != list(current.manifests):
                _atomic_write(self.index_path, current.replace(manifests=tuple(entries)).to_bytes())

    # -- manifests and tags ------------------------------------------------------------------------------

    def resolve(self, ref: str) -> Descriptor:
        """The descriptor a tag or digest names. Raises NotFoundError when absent."""
        if digest.is_digest(ref):
            for entry in self.read_index().manifests:
                if entry.digest == ref:
                    return Descriptor(
                        entry.media_type, entry.digest, entry.size, artifact_type=entry.artifact_type
                    )
            if not self.has_blob(ref):
                raise NotFoundError(f"manifest {ref} is not in {self.describe()}")
            raw = self.read_blob_bytes(ref, max_size=MAX_MANIFEST_BYTES)
            return parse(raw).descriptor()
        check_tag(ref)
        for entry in self.read_index().manifests:
            if entry.annotations.get(mediatypes.ANN_REF_NAME) == ref:
                return entry
        raise NotFoundError(
            f"tag {ref!r} is not in {self.describe()}", hint=f"tags there: {', '.join(self.tags()) or 'none'}"
        )

    def get_manifest(self, ref: str) -> RawManifest:
        desc = self.resolve(ref)
        raw = self.read_blob_bytes(desc.digest, max_size=MAX_MANIFEST_BYTES)
        return RawManifest(raw=raw, media_type=desc.media_type, digest=desc.digest)

    def put_manifest(self, ref: str, manifest: RawManifest) -> str:
        found = digest.of_bytes(manifest.raw)
        if found != manifest.digest:
            raise DigestMismatchError(
                f"manifest bytes hash to {found}, not {manifest.digest}; nothing was stored"
            )
        doc = parse(manifest.raw, manifest.media_type)
        by_digest = digest.is_digest(ref)
        if by_digest and ref != found:
            raise UsageError(f"manifest bytes hash to {found}, not to the digest {ref} they were put under")
        if not by_digest:
            check_tag(ref)
        desc = Descriptor(manifest.media_type, found, len(manifest.raw), artifact_type=doc.artifact_type)
        self.write_blob(desc, [manifest.raw])
        if by_digest and doc.subject is None:
            return found  # reachable through the index that will name it (or collected by gc)
        with self._editing_index() as entries:
            if by_digest:
                if not any(
                    e.digest == found and mediatypes.ANN_REF_NAME not in e.annotations for e in entries
                ):
                    entries.append(desc)
            else:
                entries[:] = [e for e in entries if e.annotations.get(mediatypes.ANN_REF_NAME) != ref]
                entries.append(desc.with_annotations({mediatypes.ANN_REF_NAME: ref}))
        return found

    def put_document(self, doc: Manifest | Index, tag: str | None = None) -> Descriptor:
        """Store a manifest or index we built (its canonical or raw bytes), under `tag` if given."""
        raw = doc.to_bytes()
        dgst = self.put_manifest(tag or doc.digest, RawManifest(raw, doc.media_type, doc.digest))
        return Descriptor(doc.media_type, dgst, len(raw), artifact_type=doc.artifact_type)

    def list_tags(self) -> list[str]:
        names = {e.annotations.get(mediatypes.ANN_REF_NAME) for e in self.read_index().manifests}
        return sorted(n for n in names if n)

    def tags(self) -> list[str]:
        return self.list_tags()

    def delete_tag(self, tag: str) -> None:
        check_tag(tag)
        if tag not in self.list_tags():  # also keeps a missing store from being created just to say so
            raise NotFoundError(f"tag {tag!r} is not in {self.describe()}")
        with self._editing_index() as entries:
            kept = [e for e in entries if e.annotations.get(mediatypes.ANN_REF_NAME) != tag]
            if len(kept) == len(entries):
                raise NotFoundError(f"tag {tag!r} is not in {self.describe()}")
            entries[:] = kept

    def referrers(self, dgst: str, artifact_type: str | None = None) -> list[Descriptor]:
        """Manifests in index.json whose `subject` is `dgst`, as the referrers API would describe them."""
        digest.validate(dgst)
        out: dict[str, Descriptor] = {}
        for entry in self.read_index().manifests:
            if entry.digest in out or not self.has_blob(entry.digest):
                continue
            doc = parse(self.read_blob_bytes(entry.digest, max_size=MAX_MANIFEST_BYTES), entry.media_type)
            if doc.subject is None or doc.subject.digest != dgst:
                continue
            kind = _referrer_type(doc)
            if artifact_type is None or kind == artifact_type:
                out[entry.digest] = Descriptor(
                    entry.media_type,
                    entry.digest,
                    entry.size,
                    annotations=doc.annotations,
                    artifact_type=kind,
                )
        return sorted(out.values(), key=lambda d: d.digest)

    # -- garbage collection ------------------------------------------------------------------------------

    def gc(self, *, grace_seconds: float = 3600.0) -> GcResult:
        """Remove blobs unreachable from index.json and leftover temp files (rules in oci/gc.py).

        Raises StoreError when another process is writing a blob right now (it never waits for one)."""
        if not self.index_path.is_file():
            return GcResult(0, 0)
        with self._lock(GC_LOCK, blocking=False), self._lock(INDEX_LOCK):
            index = self.read_index()
            self._check_roots(index)
            live, kept = gc.reachable(index.manifests, self._load_document)
            if len(kept) != len(index.manifests):
                _atomic_write(self.index_path, index.replace(manifests=tuple(kept)).to_bytes())
            result = gc.sweep(self.root / "blobs", live, grace_seconds=grace_seconds, now=self._clock())
            temps = gc.remove_stale_index_temps(self.root)
        return replace(
            result,
            removed_temp_files=result.removed_temp_files + temps,
            dropped_entries=len(index.manifests) - len(kept),
        )

    def _check_roots(self, index: Index) -> None:
        """A tagged manifest that is missing, does not hash to its name or does not parse would leave its
        children looking unreachable: gc refuses (naming it) and deletes nothing."""
        for entry in index.manifests:
            tag = entry.annotations.get(mediatypes.ANN_REF_NAME)
            if tag is None:
                continue
            try:
                raw = self.read_blob_bytes(entry.digest, max_size=MAX_MANIFEST_BYTES)
                if digest.of_bytes(raw) != entry.digest:
                    raise StoreError(f"its blob does not hash to {entry.digest}")
                parse(raw, entry.media_type)
            except ModelpackError as e:
                raise StoreError(
                    f"gc refused: the tagged manifest {tag} ({entry.digest}) in {self.root} cannot be read "
                    f"({e.message}); nothing was deleted",
                    hint="remove or re-pull that tag (modelpack pull / build), then run gc again",
                ) from None

    def _load_document(self, desc: Descriptor) -> Manifest | Index | None:
        if not self.has_blob(desc.digest):
            return None
        try:
            return parse(self.read_blob_bytes(desc.digest, max_size=MAX_MANIFEST_BYTES), desc.media_type)
        except ModelpackError:
            return None  # unreadable or not a manifest: keep what it is, walk no further


@contextmanager
def _space(path: Path) -> Iterator[None]:
    """A full disk is the user's to fix: say so in one line, not as an internal error."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise StoreError(
                f"no space left on device writing {path}", hint="free some space (modelpack gc), then retry"
            ) from None
        raise


def _own(name: str) -> bool:
    return name in _OWN_NAMES or name.startswith((".index.json.", ".oci-layout."))  # temps of _atomic_write


def _referrer_type(doc: Manifest | Index) -> str | None:
    """The referrers API's artifactType: the manifest's own, else its config's media type."""
    if doc.artifact_type or isinstance(doc, Index):
        return doc.artifact_type
    return doc.config.media_type


def _verified(f: BinaryIO, verifier: digest.Verifier) -> Iterator[bytes]:
    while chunk := f.read(digest.CHUNK):
        verifier.update(chunk)
        yield chunk
    verifier.check()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
