"""Referrers: the distribution-spec v1.1 API, and the `sha256-<hex>` fallback tag for registries without it.

The fallback tag holds an OCI index whose `manifests` are the referrers' descriptors (with their
artifactType and annotations), which is what oras, regclient and cosign read and write too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelpack.errors import NotFoundError, RegistryError
from modelpack.oci import canonical, mediatypes
from modelpack.oci import digest as digests
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor, Index, parse
from modelpack.oci.target import RawManifest
from modelpack.registry.pages import pages

if TYPE_CHECKING:
    from modelpack.registry.client import RegistryRepository

FALLBACK_VERIFY_ATTEMPTS = 3


def fallback_tag(digest: str) -> str:
    algorithm, hex_ = digests.validate(digest).split(":", 1)
    return f"{algorithm}-{hex_}"[:128]


def _api(repo: RegistryRepository, digest: str, artifact_type: str | None) -> list[Descriptor] | None:
    """The referrers API's answer, or None when the registry lacks the API (404).

    Whether the registry has the API is remembered per client: a registry does not grow or lose it
    between two requests, and asking again cost a promotion several round trips. The answer may come
    in pages (a `Link` header), bounded as tag lists are."""
    if repo.client.referrers_api is False:
        return None
    found: list[Descriptor] = []
    listing = pages(
        repo.client,
        f"/v2/{repo.name}/referrers/{digest}",
        what=f"referrers of {digest} in {repo.describe()}",
        scopes=repo._scope("pull"),
        headers={"Accept": mediatypes.OCI_INDEX},
        params={"artifactType": artifact_type} if artifact_type else None,
        page_limit=MAX_MANIFEST_BYTES,  # each page is an index
    )
    for number, response in enumerate(listing):
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        index = None
        if response.status_code == 200 and content_type == mediatypes.OCI_INDEX:
            index = parse(response.content, mediatypes.OCI_INDEX)
        if not isinstance(index, Index):
            if number == 0:
                # 404, or a proxy answering unknown routes with 200 HTML or 400: "no API", as oras-go does.
                repo.client.referrers_api = False
                return None
            raise RegistryError(
                f"page {number + 1} of the referrers of {digest} in {repo.describe()} is not an index "
                f"(HTTP {response.status_code}, {content_type or 'no content type'})"
            )
        repo.client.referrers_api = True
        page = list(index.manifests)
        applied = response.headers.get("oci-filters-applied", "")
        if artifact_type and "artifactType" not in applied:
            page = [d for d in page if d.artifact_type == artifact_type]
        found += page
    return found


def _fallback_index(repo: RegistryRepository, digest: str) -> Index | None:
    try:
        raw = repo.get_manifest(fallback_tag(digest))
    except NotFoundError:
        return None
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Index):
        raise RegistryError(f"tag {fallback_tag(digest)} in {repo.describe()} is not an index of referrers")
    return doc


def list_referrers(
    repo: RegistryRepository, digest: str, artifact_type: str | None = None
) -> list[Descriptor]:
    digests.validate(digest)
    found = _api(repo, digest, artifact_type)
    if found is not None:
        return found
    index = _fallback_index(repo, digest)
    if index is None:
        return []
    return [d for d in index.manifests if artifact_type is None or d.artifact_type == artifact_type]


def add_referrer(repo: RegistryRepository, desc: Descriptor, subject_digest: str) -> None:
    """Called by the repository's own manifest write for a manifest with a subject.

    Read-modify-write of the fallback index. The registry offers no conditional PUT, so two writers racing
    can each read the same index and the later PUT drops the other's entry (last writer wins; the lost
    referrer's manifest stays in the repository, only unlisted). We narrow that window by reading the tag
    back after writing and re-adding our entry if it went missing, a bounded number of times."""
    digests.validate(subject_digest)
    if repo.client.referrers_api is True or _api(repo, subject_digest, None) is not None:
        return  # the registry indexes manifests with a subject itself
    tag = fallback_tag(subject_digest)
    entry = Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        artifact_type=desc.artifact_type,
        annotations=desc.annotations,
    )
    for _ in range(FALLBACK_VERIFY_ATTEMPTS):
        index = _fallback_index(repo, subject_digest)
        current = list(index.manifests) if index is not None else []
        if any(d.digest == entry.digest for d in current):
            return
        raw = canonical.dumps(Index(manifests=(*current, entry)).to_json())
        repo.put_manifest(tag, RawManifest(raw, mediatypes.OCI_INDEX, digests.of_bytes(raw)))
    check = _fallback_index(repo, subject_digest)
    if check is None or not any(d.digest == entry.digest for d in check.manifests):
        raise RegistryError(
            f"referrer {desc.digest} kept being dropped from {tag} in {repo.describe()} by concurrent writers"
        )


def subject_of(raw: RawManifest) -> str | None:
    """The digest a manifest's `subject` names, or None for a manifest that refers to nothing."""
    try:
        subject = canonical.loads(raw.raw).get("subject")
    except (ValueError, AttributeError, RecursionError):
        return None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None


def descriptor_of(raw: RawManifest) -> Descriptor:
    """The descriptor a referrers index lists for a manifest: with its artifactType and annotations."""
    obj = canonical.loads(raw.raw)
    artifact_type = obj.get("artifactType") or (obj.get("config") or {}).get("mediaType")
    return Descriptor(
        media_type=raw.media_type,
        digest=raw.digest,
        size=len(raw.raw),
        artifact_type=artifact_type,
        annotations=obj.get("annotations") or {},
    )
