"""The local store: an OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`).

Any tool that reads OCI layouts (skopeo `oci:DIR:TAG`, oras, crane) reads what we write. Tags are
`org.opencontainers.image.ref.name` annotations on index.json entries, one entry per tag. Referrers (manifests
with a `subject`) put by digest get an untagged index.json entry so they can be found and are kept by gc.
A manifest may name blobs the store does not hold: a serving image's base layers stay in the base image's
repository and are never pulled here (the copy engine finds them through its fallbacks).

index.json is rewritten whole (temp + fsync + rename) while holding an exclusive flock on `.index.lock`, so
concurrent writers (threads or processes) never lose each other's tags and readers always see a complete
file. Blobs, their locks and source-backed blobs are store/blobs.py; garbage collection is store/gc.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from modelpack.errors import DigestMismatchError, NotFoundError, StoreError, UsageError
from modelpack.oci import digest, mediatypes
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor, Index, Manifest, parse
from modelpack.oci.target import RawManifest
from modelpack.store import gc
from modelpack.store.atomic import atomic_write
from modelpack.store.blobs import GC_LOCK, INDEX_LOCK, LAYOUT_VERSION, TMP_DIR, BlobStore
from modelpack.store.gc import GcResult

__all__ = [
    "GC_LOCK", "INDEX_LOCK", "LAYOUT_VERSION", "TMP_DIR", "LayoutStore", "check_tag", "default_store_path"
]  # fmt: skip

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


class LayoutStore(BlobStore):
    """An OCI image layout directory implementing the Target protocol. Created on the first write."""

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
        with self.lock(INDEX_LOCK):
            current = self.read_index()
            entries = list(current.manifests)
            yield entries
            if entries != list(current.manifests):
                atomic_write(self.index_path, current.replace(manifests=tuple(entries)).to_bytes())

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
        """Remove blobs unreachable from index.json, source-backed blobs whose files changed, and leftover
        temp files (rules in store/gc.py). Raises StoreError when another process is writing right now."""
        return gc.collect(self, grace_seconds=grace_seconds, now=self._clock())



def _referrer_type(doc: Manifest | Index) -> str | None:
    """The referrers API's artifactType: the manifest's own, else its config's media type."""
    if doc.artifact_type or isinstance(doc, Index):
        return doc.artifact_type
    return doc.config.media_type
