"""One repository of the local store, seen as a registry repository is: tags without a prefix.

The local store is a single OCI image layout holding every release built or pulled on this machine. Its
index.json names them `NAME:TAG` (the `org.opencontainers.image.ref.name` grammar allows it, and skopeo
and oras read such a layout; the source-backed weight layers of releases built here are served by
modelpack only, so `modelpack copy NAME:TAG oci:DIR` is how another tool gets a complete layout).
Everything above this module sees repositories instead: the repository `iris` with tags `1.0.0` and
`prod`, or `127.0.0.1:5000/acme/iris` for a pulled release, so promote, history, ls and copy are written
once for registries, layouts and the store alike.

Blobs and referrers are shared by every repository of the store (content-addressed, so sharing is safe);
manifests by digest are found wherever the store holds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager

from modelpack.errors import NotFoundError
from modelpack.oci import digest
from modelpack.oci.model import Descriptor
from modelpack.oci.target import BlobCopy, ProgressFn, RawManifest, Target, no_progress
from modelpack.store.layout import LayoutStore


def store_repositories(store: LayoutStore) -> dict[str, list[str]]:
    """Repository name -> its tags, from the store's index (one read)."""
    out: dict[str, list[str]] = {}
    for full in store.list_tags():
        name, sep, tag = full.rpartition(":")
        if sep and name and "/" not in tag:
            out.setdefault(name, []).append(tag)
    return {name: sorted(tags) for name, tags in sorted(out.items())}


class StoreRepository:
    """The Target protocol over one repository NAME of the local store."""

    def __init__(self, store: LayoutStore, name: str) -> None:
        self.store = store
        self.name = name

    def __repr__(self) -> str:
        return f"StoreRepository({self.name!r} in {self.store.root})"

    def describe(self) -> str:
        return f"{self.name} (local store {self.store.root})"

    def exists(self) -> bool:
        return self.store.index_path.is_file() and bool(self.list_tags())

    def _full(self, ref: str) -> str:
        return ref if digest.is_digest(ref) else f"{self.name}:{ref}"

    def has_blob(self, dgst: str) -> bool:
        return self.store.has_blob(dgst)

    def read_blob(self, desc: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        return self.store.read_blob(desc)

    def read_blob_at(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        return self.store.read_blob_at(desc, offset)

    def copy_blob_from(
        self, sources: Sequence[Target], desc: Descriptor, progress: ProgressFn = no_progress
    ) -> BlobCopy:
        return self.store.copy_blob_from(sources, desc, progress)

    def write_blob(
        self, desc: Descriptor, chunks: Iterable[bytes], progress: ProgressFn = no_progress
    ) -> None:
        self.store.write_blob(desc, chunks, progress)

    def get_manifest(self, ref: str) -> RawManifest:
        try:
            return self.store.get_manifest(self._full(ref))
        except NotFoundError:
            what = f"{self.name}@{ref}" if digest.is_digest(ref) else f"{self.name}:{ref}"
            tags = self.list_tags() if self.store.index_path.is_file() else []
            hint = f"its tags: {', '.join(tags)}" if tags else "see `modelpack list`"
            raise NotFoundError(
                f"no release {what} in the local store {self.store.root}", hint=hint
            ) from None

    def put_manifest(self, ref: str, manifest: RawManifest) -> str:
        return self.store.put_manifest(self._full(ref), manifest)

    def list_tags(self) -> list[str]:
        prefix = f"{self.name}:"
        return sorted(t[len(prefix) :] for t in self.store.list_tags() if t.startswith(prefix))

    def delete_tag(self, tag: str) -> None:
        self.store.delete_tag(self._full(tag))

    def referrers(self, dgst: str, artifact_type: str | None = None) -> list[Descriptor]:
        return self.store.referrers(dgst, artifact_type)
