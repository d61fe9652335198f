"""`catalog`, `evidence` and `report`: what the portal (and any dashboard) reads, in as few round trips as
the registry allows.

`catalog` is `ls` with everything a table of versions shows in one pass: each version's record, its
newest test report's verdict and latency, the artifact types attached to it (signatures, SBOMs) and the
environments naming it. One referrers listing per version answers both the report and the evidence
columns. A `DigestCache` (bytes by digest: immutable, so never stale) keeps what is read by digest (the
bundle manifests of index releases, report payloads) for later reads; tags and referrers are always read
again, they move.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelpack.errors import ContentError, NotFoundError, UsageError
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import RawManifest, Target
from modelpack.targets import Location, Targets

if TYPE_CHECKING:
    from modelpack.evidence.labels import Label
    from modelpack.evidence.signatures import Listed
    from modelpack.release.query import Version
    from modelpack.release.view import ReleaseView

WORKERS = 16  # round trips, not bytes: the registry answers many at once
MAX_REPORT_BYTES = 4 * 1024 * 1024


class DigestCache(Protocol):
    """Bytes by content digest; `get` verifies nothing, so a cache must only hold what `put` was given."""

    def get(self, digest: str) -> bytes | None: ...

    def put(self, digest: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class Artifact:
    """A referrer of a release: a test report, a signature, an SBOM, anything attached."""

    digest: str
    artifact_type: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    signature: str | None = None  # "release" | "model": a signature `modelpack sign` attaches (unverified)

    @property
    def is_signature(self) -> bool:
        return self.signature is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "artifactType": self.artifact_type,
            "size": self.size,
            "annotations": dict(self.annotations),
            "signature": self.signature,
        }


@dataclass(frozen=True)
class CatalogEntry:
    tag: str
    release: ReleaseView
    test_passed: bool | None  # the newest report's verdict; None: no report
    tested: Mapping[str, float]  # the newest report's test-run metrics (latency, image size)
    artifacts: tuple[Artifact, ...]  # every referrer, newest report first
    signatures: tuple[Listed, ...] = ()  # release and model signatures, listed (`verify` checks them)
    labels: Mapping[str, Label] = field(default_factory=dict)  # labels on (archived), with who and why

    @property
    def signed(self) -> bool:
        return bool(self.signatures)

    def to_json(self) -> dict[str, Any]:
        rec = self.release.record
        return {
            "tag": self.tag,
            "version": rec.version,
            "alias": rec.version != self.tag,
            "digest": self.release.digest,
            "image": self.release.image.digest if self.release.image is not None else None,
            "record": rec.to_json(),
            "test": {"passed": self.test_passed, "metrics": dict(self.tested)}
            if self.test_passed is not None
            else None,
            "signed": self.signed,
            "signatures": [s.to_json() for s in self.signatures],
            "artifacts": [a.to_json() for a in self.artifacts],
            "labels": {name: lb.to_json() for name, lb in sorted(self.labels.items())},
        }


@dataclass(frozen=True)
class CatalogResult:
    repository: str
    entries: tuple[CatalogEntry, ...]  # in `ls` order, or sorted and filtered as asked
    environments: Mapping[str, str]  # environment tag (with promotion history) -> the digest it names
    sort: str | None = None
    notes: tuple[str, ...] = ()  # how the where conditions were read, as ls says them

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "sort": self.sort,
            "notes": list(self.notes),
            "environments": dict(sorted(self.environments.items())),
            "versions": [e.to_json() for e in self.entries],
        }


@dataclass(frozen=True)
class ReportResult:
    reference: str
    digest: str
    report: Mapping[str, Any]  # the report's JSON as the runner wrote it

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "report": dict(self.report)}


def catalog(
    targets: Targets,
    repository: str,
    *,
    sort: str | None = None,
    asc: bool = False,
    where: Sequence[str] = (),
    cache: DigestCache | None = None,
) -> CatalogResult:
    """Every release of `repository` with its test verdict, evidence and environments, filtered by `where`
    and ordered by `sort` exactly as `ls --where/--sort` does."""
    from modelpack.api._read import choose, parse_where
    from modelpack.environment.place import Place, environments
    from modelpack.release import query

    wheres = parse_where(targets, where)  # as ls reads them: a published dataset by its digest
    place = targets.open(repository)
    if place.ref is not None:
        raise UsageError(
            f"catalog takes a repository, not a release: drop the tag from {repository!r}",
            hint=place.repository,
        )
    tags = query.release_tags(place.target.list_tags())

    def one(tag: str) -> tuple[Version, CatalogEntry] | None:
        try:
            release = _load(place.target, tag, cache)
        except (ContentError, NotFoundError):  # not a release, or deleted since the listing
            return None
        return _entry(place.target, tag, release)

    with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(tags)))) as pool:
        found = [x for x in pool.map(one, tags) if x is not None]
        envs = environments(Place.of(place), [e.tag for _, e in found])
    versions = [v for v, _ in found]
    by_tag = {e.tag: e for _, e in found}
    chosen, notes = choose(versions, wheres, sort, asc)
    return CatalogResult(
        place.repository,
        tuple(by_tag[v.tag] for v in chosen),
        {e.tag: e.release.digest for _, e in found if e.tag in envs},
        sort,
        notes,
    )


def _entry(target: Target, tag: str, release: ReleaseView) -> tuple[Version, CatalogEntry]:
    from modelpack.evidence import evidence, labels, signatures
    from modelpack.packfile.gates import MEASURED
    from modelpack.release.query import Version

    referrers = target.referrers(release.digest)
    found = [_artifact(d) for d in referrers]
    if release.bundle.digest != release.digest:  # an index release: the model signature is on its bundle
        referrers = [*referrers, *target.referrers(release.bundle.digest, mt.SIGSTORE_BUNDLE)]
    reports = sorted(
        (a for a in found if a.artifact_type == evidence.REPORT_TYPE),
        key=lambda a: (a.annotations.get(evidence.ANN_CREATED, ""), a.digest),
        reverse=True,
    )
    others = sorted((a for a in found if a.artifact_type != evidence.REPORT_TYPE), key=lambda a: a.digest)
    passed: bool | None = None
    tested: dict[str, float] = {}
    if reports:
        newest = reports[0]
        passed = newest.annotations.get(evidence.ANN_PASSED) == "true"
        desc = Descriptor(evidence.REPORT_TYPE, newest.digest, newest.size, annotations=newest.annotations)
        tested = {k: x for k, x in evidence.measured(desc).items() if k in MEASURED}
    signed = signatures.classify(referrers)
    on = labels.current(referrers)
    entry = CatalogEntry(tag, release, passed, tested, tuple(reports + others), signed, on)
    return Version(tag, release, tested, passed, on), entry


def _artifact(d: Descriptor) -> Artifact:
    from modelpack.evidence.signatures import kind_of

    return Artifact(d.digest, d.artifact_type or d.media_type, d.size, dict(d.annotations or {}), kind_of(d))


def _load(target: Target, tag: str, cache: DigestCache | None) -> ReleaseView:
    from modelpack.release.view import release_from_manifest

    def fetch(ref: str) -> RawManifest:
        return _manifest(target, ref, cache)

    where = f"{target.describe()}:{tag}"
    return release_from_manifest(_manifest(target, tag, cache), fetch, layers=False, where=where)


def _manifest(target: Target, ref: str, cache: DigestCache | None) -> RawManifest:
    """A manifest by digest from `cache` when there, else read and kept. A tag is always read: a HEAD
    to learn its digest costs the same round trip as the GET of a manifest this small."""
    if cache is None or not digests.is_digest(ref):
        raw = target.get_manifest(ref)
        if cache is not None:
            cache.put(raw.digest, raw.raw)
        return raw
    hit = cache.get(ref)
    if hit is not None and digests.of_bytes(hit) == ref:  # a damaged cache file is read again, not trusted
        try:
            media_type = str(canonical.loads(hit).get("mediaType") or "")
        except (ValueError, AttributeError):
            media_type = ""
        if media_type:
            return RawManifest(hit, media_type, ref)
    raw = target.get_manifest(ref)  # verified against `ref` by the client
    cache.put(raw.digest, raw.raw)
    return raw


def evidence(targets: Targets, reference: str) -> tuple[Artifact, ...]:
    """Every artifact attached to the release `reference` names (its referrers), by type."""
    where, ref = _release(targets, reference)
    digest = where.target.get_manifest(ref).digest if not digests.is_digest(ref) else ref
    return tuple(_artifact(d) for d in where.target.referrers(digest))


def report(
    targets: Targets, reference: str, digest: str, *, cache: DigestCache | None = None
) -> ReportResult:
    """The test report `digest` (a referrer in `reference`'s repository), read bounded from either format
    (a DSSE envelope or the plain JSON of older reports)."""
    from modelpack.evidence.attestations import read_report

    digests.validate(digest)
    where = targets.open(reference)
    data = cache.get(f"{digest}.report") if cache is not None else None
    if data is None:
        doc = read_report(where.target, Descriptor("", digest, 0), MAX_REPORT_BYTES)
        if cache is not None:
            cache.put(f"{digest}.report", json.dumps(doc, sort_keys=True).encode())
    else:
        doc = canonical.loads(data)
    return ReportResult(where.display, digest, doc)


def _release(targets: Targets, text: str) -> tuple[Location, str]:
    where = targets.open(text)
    return where, where.need_ref("read")
