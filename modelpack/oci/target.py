"""The one interface every place content lives behind: a registry repository or an OCI layout directory.

Copy, push, pull, promote and rollback are written once against this protocol, so every verb works the same
against a remote registry and against a local layout (the embedded default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from modelpack.oci.model import Descriptor


@dataclass(frozen=True)
class Progress:
    """One progress event: `done` of `total` bytes of the blob `digest` moved. The CLI renders these."""

    digest: str
    done: int
    total: int
    what: str = "blob"  # "blob", "skip" (already there), "mount"


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    return None


@dataclass(frozen=True)
class RawManifest:
    """Manifest bytes exactly as stored, with the media type they were stored under."""

    raw: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class BlobCopy:
    """How a blob reached a target: "skip" (it was there), "mount" (shared storage, no bytes sent) or
    "upload", with the bytes sent."""

    how: str
    digest: str
    bytes_sent: int


# advanced(end, data): the bytes written contiguously from the first offset now reach `end`; `data` is
# the newly covered bytes when the writer had them in hand in order (else None: read them from the file).
Advanced = Callable[[int, bytes | None], None]


@runtime_checkable
class WritesAtOffsets(Protocol):
    """A source that writes a blob straight into a file at its offsets (parallel ranges, os.pwrite), so
    no piece waits in memory for the ones before it; the caller hashes behind the contiguous prefix."""

    def fetch_blob_into(self, desc: Descriptor, fd: int, start: int, advanced: Advanced) -> None: ...


class Target(Protocol):
    """A repository-scoped content store: blobs by digest, manifests by digest or tag, tags, referrers."""

    def describe(self) -> str:
        """A human name for messages, e.g. `127.0.0.1:5000/acme/iris` or `oci:/path/to/layout`."""
        ...

    def has_blob(self, digest: str) -> bool: ...

    def read_blob(self, desc: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        """Yields the blob in chunks; raises DigestMismatchError at the end if they do not hash to desc."""
        ...

    def read_blob_at(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        """The blob from byte `offset` to its end, unverified: the re-readable source of a resumable copy
        (the receiver checks the digest of the whole). Raises NotFoundError when absent."""
        ...

    def write_blob(
        self, desc: Descriptor, chunks: Iterable[bytes], progress: ProgressFn = no_progress
    ) -> None:
        """Stores a blob, verifying digest and size; nothing is kept under the digest when they differ."""
        ...

    def copy_blob_from(
        self, sources: Sequence[Target], desc: Descriptor, progress: ProgressFn = no_progress
    ) -> BlobCopy:
        """Stores `desc` from one of `sources` (each holds it) the cheapest way this target offers:
        nothing when it has it, a mount from a source sharing its storage, else a copy that resumes."""
        ...

    def get_manifest(self, ref: str) -> RawManifest:
        """`ref` is a tag or a digest. Raises NotFoundError when absent."""
        ...

    def put_manifest(self, ref: str, manifest: RawManifest) -> str:
        """Stores the exact bytes under a tag or their digest; returns the digest the target reports."""
        ...

    def list_tags(self) -> list[str]: ...

    def delete_tag(self, tag: str) -> None:
        """Removes one tag only; never deletes the manifest (its other tags stay)."""
        ...

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """Manifests whose `subject` is `digest`."""
        ...
