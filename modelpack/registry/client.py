"""RegistryRepository: one repository of a registry, behind the Target protocol.

Manifests travel as raw bytes end to end (a retag is GET bytes + PUT the same bytes), every pulled byte
is verified against its digest, and a tag is removed without touching the manifest it pointed at.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from modelpack.errors import DigestMismatchError, NotFoundError, RegistryError
from modelpack.oci import canonical, mediatypes
from modelpack.oci import digest as digests
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor, Manifest
from modelpack.oci.target import Advanced, BlobCopy, Progress, ProgressFn, RawManifest, Target, no_progress
from modelpack.registry import referrers as _referrers
from modelpack.registry.auth import repository_scope
from modelpack.registry.pages import pages
from modelpack.registry.ranged import RangeOptions, fetch_ranged_into, iter_blob_ranged
from modelpack.registry.transport import RegistryClient
from modelpack.registry.upload import (
    BlobOpener,
    UploadOptions,
    blob_exists,
    push_blob,
    try_mount,
)
from modelpack.registry.upload_source import OneShotSource
from modelpack.store.uploads import UploadSessions

ANN_TAG_TOMBSTONE = "dev.modelpack.tag-tombstone"
MANIFEST_BLOB_UNKNOWN_RETRIES = 3


class RegistryRepository:
    """`client` is shared by every repository of one registry; `name` is the repository path; `sessions`
    keeps chunked uploads from re-readable sources resumable across runs (the local store's record)."""

    def __init__(
        self,
        client: RegistryClient,
        name: str,
        *,
        upload: UploadOptions = UploadOptions(),
        ranges: RangeOptions = RangeOptions(),
        sessions: UploadSessions | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.sessions = sessions
        self.upload_options = upload
        self.range_options = ranges

    def __repr__(self) -> str:
        return f"RegistryRepository({self.describe()!r})"

    def describe(self) -> str:
        return f"{self.client.registry}/{self.name}"

    def _scope(self, *actions: str) -> list[str]:
        return [repository_scope(self.name, *actions)]

    # blobs

    def has_blob(self, digest: str) -> bool:
        return blob_exists(self.client, self.name, digests.validate(digest))

    @contextlib.contextmanager
    def read_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """The blob, verified as it streams; a large one in parallel ranges (ranged.py), and a torn
        connection resumes with a Range request."""
        verifier = digests.Verifier(desc.digest, desc.size, what=f"blob {desc.digest} from {self.describe()}")
        chunks = iter_blob_ranged(self.client, self.name, desc, verifier=verifier, options=self.range_options)
        try:
            first = next(chunks, b"")  # fail here, before the caller writes anything, on 404/401
            yield _prepend(first, chunks)
        finally:
            chunks.close()

    def read_blob_at(self, desc: Descriptor, offset: int) -> Iterator[bytes]:
        """Ranged GETs from `offset`: this repository as the resumable source of an upload (unverified
        here: the destination registry checks the digest when the upload completes)."""
        return iter_blob_ranged(self.client, self.name, desc, offset, options=self.range_options)

    def fetch_blob_into(self, desc: Descriptor, fd: int, start: int, advanced: Advanced) -> None:
        """Write the blob from `start` into `fd` at its offsets (the store's pull: ranges land as they
        arrive, nothing held in memory); unverified here: the caller hashes behind `advanced`."""
        fetch_ranged_into(self.client, self.name, desc, fd, start, advanced, options=self.range_options)

    def download_blob(self, desc: Descriptor, dest: Path, progress: ProgressFn = no_progress) -> None:
        """Stream a blob to `dest`; it appears there only once its digest and size were verified."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, self.read_blob(desc) as chunks:
                done = 0
                for chunk in chunks:
                    out.write(chunk)
                    done += len(chunk)
                    progress(Progress(desc.digest, done, desc.size))
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def push_blob(
        self,
        desc: Descriptor,
        open_at: BlobOpener,
        progress: ProgressFn = no_progress,
        mount_from: str | None = None,
    ) -> BlobCopy:
        """Upload from a re-readable source (resumable); HEAD-skips and mounts from `mount_from` first."""
        return push_blob(
            self.client,
            self.name,
            desc,
            open_at,
            progress=progress,
            mount_from=mount_from,
            options=self.upload_options,
            sessions=self.sessions,
        )

    def mount_blob(self, desc: Descriptor, source: Target) -> bool:
        """Cross-repository mount from `source` when it is another repository of this registry."""
        if not isinstance(source, RegistryRepository) or source.client.registry != self.client.registry:
            return False
        if source.name == self.name:
            return False
        return try_mount(self.client, self.name, desc, source.name)

    def copy_blob_from(
        self, sources: Sequence[Target], desc: Descriptor, progress: ProgressFn = no_progress
    ) -> BlobCopy:
        """A mount from a source that is another repository of this registry, else a resumable upload
        from the first source, re-read from the registry's offset on every resume."""
        if self.has_blob(desc.digest):
            progress(Progress(desc.digest, desc.size, desc.size, "skip"))
            return BlobCopy("skip", desc.digest, 0)
        for source in sources:
            if self.mount_blob(desc, source):
                progress(Progress(desc.digest, desc.size, desc.size, "mount"))
                return BlobCopy("mount", desc.digest, 0)
        source = sources[0]
        return push_blob(
            self.client,
            self.name,
            desc,
            lambda offset: source.read_blob_at(desc, offset),
            progress=progress,
            options=self.upload_options,
            check_exists=False,
            sessions=self.sessions,
        )

    def write_blob(
        self, desc: Descriptor, chunks: Iterable[bytes], progress: ProgressFn = no_progress
    ) -> None:
        """Upload from a one-shot stream: resumable within the current chunk, which is kept in memory."""
        opts = self.upload_options
        chunk = min(opts.chunk_size, opts.stream_chunk_size)
        source = OneShotSource(chunks, keep=chunk)
        # A restart re-reads from byte 0, so a monolithic PUT is only safe within what the source keeps.
        small = dataclasses.replace(opts, monolithic_max=min(opts.monolithic_max, chunk), chunk_size=chunk)
        push_blob(self.client, self.name, desc, source.open_at, progress=progress, options=small)

    # manifests

    def get_manifest(self, ref: str) -> RawManifest:
        response = self.client.send(
            "GET",
            f"/v2/{self.name}/manifests/{ref}",
            scopes=self._scope("pull"),
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
            stream=True,
        )
        try:
            if response.status_code != 200:
                self.client.read_body(response)
                raise self.client.status_error(response, _what(ref), self.describe())
            raw = self.client.read_body(
                response, MAX_MANIFEST_BYTES, what=f"{_what(ref)} in {self.describe()}", kind="manifest"
            )
        finally:
            response.close()
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        try:
            media_type = canonical.loads(raw).get("mediaType") or media_type
        except (ValueError, AttributeError, RecursionError):
            raise RegistryError(f"{_what(ref)} in {self.describe()} is not valid JSON") from None
        actual = digests.of_bytes(raw)
        expected = ref if digests.is_digest(ref) else response.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != actual:
            raise DigestMismatchError(
                f"{_what(ref)} from {self.describe()} hashes to {actual}, expected {expected}; refused"
            )
        return RawManifest(raw=raw, media_type=media_type, digest=actual)

    def resolve(self, ref: str) -> Descriptor:
        """HEAD a manifest: its descriptor (media type, digest, size) without its body."""
        response = self.client.send(
            "HEAD",
            f"/v2/{self.name}/manifests/{ref}",
            scopes=self._scope("pull"),
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
        )
        if response.status_code != 200:
            raise self.client.status_error(response, _what(ref), self.describe())
        found = response.headers.get("docker-content-digest")
        if not found:  # not every registry sends it on HEAD; the body settles it
            manifest = self.get_manifest(ref)
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Descriptor(media_type, found, int(response.headers.get("content-length") or 0))

    def put_manifest(self, ref: str, manifest: RawManifest) -> str:
        if len(manifest.raw) > MAX_MANIFEST_BYTES:
            raise RegistryError(
                f"manifest of {len(manifest.raw)} bytes is over the {MAX_MANIFEST_BYTES}-byte limit"
            )
        expected = digests.of_bytes(manifest.raw)
        if digests.is_digest(ref) and ref != expected:
            raise DigestMismatchError(f"manifest bytes hash to {expected}, not to {ref}; refused")
        for attempt in range(1, MANIFEST_BLOB_UNKNOWN_RETRIES + 2):
            response = self.client.send(
                "PUT",
                f"/v2/{self.name}/manifests/{ref}",
                scopes=self._scope("pull", "push"),
                headers={"Content-Type": manifest.media_type},
                body=manifest.raw,
            )
            # Blobs are pushed before the manifests naming them, so "blob unknown" here means a concurrent
            # push of the same blob is rewriting its link (distribution 2.8's filesystem driver rewrites it
            # in place): the same PUT a moment later succeeds.
            if response.status_code != 400 or "MANIFEST_BLOB_UNKNOWN" not in response.text:
                break
            if attempt <= MANIFEST_BLOB_UNKNOWN_RETRIES:
                self.client.backoff(attempt)
        if response.status_code not in (200, 201, 202):
            raise self.client.status_error(response, f"push of manifest {_what(ref)}", self.describe())
        reported = response.headers.get("docker-content-digest")
        if reported and reported != expected:
            raise DigestMismatchError(
                f"{self.describe()} stored manifest {expected} as {reported} (it rewrote the bytes); refused"
            )
        subject = _referrers.subject_of(manifest)
        # A registry with the referrers API indexes a manifest with a subject itself and says so with
        # OCI-Subject; without it the writer keeps the fallback tag index, here, so no caller can forget
        # (as go-containerregistry and oras-go do in their manifest write).
        if subject is not None and not response.headers.get("oci-subject"):
            _referrers.add_referrer(self, _referrers.descriptor_of(manifest), subject)
        return expected

    def delete_manifest(self, digest: str) -> None:
        """Deletes a manifest and with it every tag on it. Use delete_tag to remove a single tag."""
        response = self.client.send(
            "DELETE",
            f"/v2/{self.name}/manifests/{digests.validate(digest)}",
            scopes=self._scope("pull", "push", "delete"),
        )
        if response.status_code == 405:
            raise self._deletes_disabled("cannot delete manifests")
        if response.status_code not in (200, 202, 204):
            raise self.client.status_error(response, f"deletion of manifest {digest}", self.describe())

    def check_deletes(self) -> None:
        """Raise the one clear line when the registry disables deletes, before anything is touched."""
        self._check_deletes_enabled()

    def _deletes_disabled(self, what: str) -> RegistryError:
        return RegistryError(
            f"{self.client.registry} does not allow deletes (HTTP 405): {what} in {self.describe()}",
            hint="enable deletes on the registry (distribution: storage.delete.enabled: true)",
        )

    # tags

    def list_tags(self, page_size: int | None = None) -> list[str]:
        tags: list[str] = []
        for response in pages(
            self.client,
            f"/v2/{self.name}/tags/list",
            what=f"tag list of {self.describe()}",
            scopes=self._scope("pull"),
            params={"n": str(page_size)} if page_size else None,
        ):
            if response.status_code == 404:
                raise NotFoundError(f"repository {self.name} not found in {self.client.registry}")
            if response.status_code != 200:
                raise self.client.status_error(response, "tag list", self.describe())
            try:
                tags += [t for t in (response.json().get("tags") or []) if isinstance(t, str)]
            except (ValueError, AttributeError, RecursionError):
                raise RegistryError(f"tag list of {self.describe()} is not valid JSON") from None
        return tags

    def delete_tag(self, tag: str) -> None:
        """Remove one tag, never its siblings: distribution cannot delete a tag alone, so (as regclient
        does) the tag is first pointed at a tiny manifest unique to this call, which is then deleted by
        its digest; no other tag can share that digest."""
        previous = self.resolve(tag)
        self._check_deletes_enabled()
        empty = Descriptor(
            mediatypes.OCI_EMPTY, digests.of_bytes(mediatypes.EMPTY_JSON), len(mediatypes.EMPTY_JSON)
        )
        self.push_blob(empty, lambda offset: iter([mediatypes.EMPTY_JSON[offset:]]))
        tombstone = Manifest(
            config=empty,
            layers=(),
            artifact_type=mediatypes.TAG_TOMBSTONE,
            annotations={ANN_TAG_TOMBSTONE: secrets.token_hex(16)},
        )
        raw = tombstone.to_bytes()
        placeholder = self.put_manifest(tag, RawManifest(raw, mediatypes.OCI_MANIFEST, digests.of_bytes(raw)))
        try:
            self.delete_manifest(placeholder)
        except RegistryError as e:
            raise RegistryError(
                f"{self.describe()} refused to delete tag {tag} ({e}); "
                f"{tag} now points at an empty placeholder {placeholder}",
                hint="the registry may have deletes disabled (storage.delete.enabled)",
            ) from None
        # The manifest the tag pointed at, and so its other tags, must still be there.
        self.resolve(previous.digest)

    def _check_deletes_enabled(self) -> None:
        """Probe with a digest nobody has: 404 means deletes work, 405 means the registry disables them.
        Asked before the tag is touched, so a refusal leaves it as it was."""
        probe = digests.of_bytes(secrets.token_bytes(16))
        response = self.client.send(
            "DELETE", f"/v2/{self.name}/manifests/{probe}", scopes=self._scope("pull", "push", "delete")
        )
        if response.status_code == 405:
            raise self._deletes_disabled("cannot remove tags")

    # referrers

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        return _referrers.list_referrers(self, digest, artifact_type)


def _prepend(first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from chunks


def _what(ref: str) -> str:
    return f"manifest {ref}" if digests.is_digest(ref) else f"tag {ref}"


def _conforms(repo: RegistryRepository) -> Target:
    return repo  # mypy checks here that RegistryRepository implements the Target protocol
