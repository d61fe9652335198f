"""Attestations as referrers of the release index: the signed test report (in-toto test-result), SLSA
provenance and the CycloneDX SBOM; their writers, their listing, and the checks `verify` and the
promotion policies run.

Test evidence keeps the test report's artifactType and annotations, so `evidence.passing_report` decides
from a listing alone for reports of every version; what changed is the payload: a DSSE envelope over an
in-toto statement whose subject is the index digest (media type `DSSE_ENVELOPE`) instead of the bare
report JSON (`application/json`, what older versions wrote, still read here).

Each check returns a `Check`: ok or not, and one line saying why. A check never raises for bad evidence
(a tampered envelope, a statement over another digest, a payload that does not parse): that is its
verdict. It raises only when the registry itself fails, so "cannot tell" is never read as "bad".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpack.errors import ContentError, DigestMismatchError, InputError, NotFoundError
from modelpack.evidence import evidence
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Target
from modelpack.trust.check import Check
from modelpack.trust.dsse import IN_TOTO_PAYLOAD_TYPE, Opened, open_envelope, seal
from modelpack.trust.intoto import TEST_RESULT_PREDICATE, parse_statement, subject_digests
from modelpack.trust.keys import PrivateKey, PublicKey
from modelpack.trust.slsa import SLSA_PREDICATE, commit_of

KINDS = {
    evidence.REPORT_TYPE: "test",
    mt.PROVENANCE_ARTIFACT: "provenance",
    mt.SBOM_ARTIFACT: "sbom",
}
# What pull and copy carry with a release even without --referrers: facts of the build, not of a place.
TRAVELS = frozenset({mt.PROVENANCE_ARTIFACT, mt.SBOM_ARTIFACT})
# Evidence that does not read back as it was written (edited in a layout, malformed, oversized): a verdict
BAD_CONTENT = (ContentError, InputError, DigestMismatchError)
MAX_CANDIDATES = 16  # provenance documents read per check: beyond any real count of rebuilds


@dataclass(frozen=True)
class Listed:
    """An attestation as a referrers listing shows it (no blob fetched)."""

    kind: str  # "test" | "provenance" | "sbom"
    digest: str
    artifact_type: str
    created: str
    signer: str | None  # the keyid the writer claimed: a hint, checked only by verify

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "digest": self.digest,
            "artifactType": self.artifact_type,
            "created": self.created,
            "signer": self.signer,
        }


def listed(target: Target, digest: str) -> tuple[Listed, ...]:
    """Every attestation attached to `digest`, newest first within a kind (one referrers listing)."""
    return classify(target.referrers(digest))


def classify(referrers: Iterable[Descriptor]) -> tuple[Listed, ...]:
    """The attestations among `referrers` (of one release), for a caller that lists them anyway."""
    out = []
    for d in referrers:
        kind = KINDS.get(d.artifact_type or "")
        if kind is None:
            continue
        ann = d.annotations or {}
        created = ann.get(evidence.ANN_CREATED) or ann.get(mt.ANN_CREATED) or ""
        out.append(Listed(kind, d.digest, d.artifact_type or "", created, ann.get(mt.ANN_SIGNER)))
    # stable sorts: by kind, newest first within one (RFC 3339 UTC sorts as text), digest breaking ties
    out.sort(key=lambda x: x.digest)
    out.sort(key=lambda x: x.created, reverse=True)
    return tuple(sorted(out, key=lambda x: x.kind))


def attach_envelope(
    target: Target,
    subject: Descriptor,
    artifact_type: str,
    statement: Mapping[str, Any],
    key: PrivateKey | None,
    annotations: Mapping[str, str],
) -> Descriptor:
    """Seals `statement` (signed by `key` when given) and attaches the envelope to `subject`."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = seal(payload, key)
    body = json.dumps(envelope, sort_keys=True).encode() + b"\n"
    ann = {**annotations, mt.ANN_PREDICATE_TYPE: str(statement["predicateType"])}
    if key is not None:
        ann[mt.ANN_SIGNER] = key.public.keyid
    return evidence.attach(target, subject, artifact_type, body, mt.DSSE_ENVELOPE, ann)


def attach_sbom(target: Target, subject: Descriptor, sbom: bytes, created: str) -> Descriptor:
    return evidence.attach(
        target, subject, mt.SBOM_ARTIFACT, sbom, mt.CYCLONEDX_JSON, {mt.ANN_CREATED: created}
    )


def read_report(target: Target, referrer: Descriptor, max_size: int = 4 * 1024 * 1024) -> dict[str, Any]:
    """The test report a referrer holds, as `TestReport.to_json()` wrote it, from either format: the
    in-toto statement's `modelpack` predicate field (a DSSE envelope, signed or not) or the plain JSON of
    reports written before signed evidence. Not a verdict: `check_test_evidence` verifies; this reads."""
    media_type, payload = evidence.read_layer(target, referrer, max_size)
    try:
        if media_type == mt.DSSE_ENVELOPE:
            doc = parse_statement(open_envelope(payload).statement(), TEST_RESULT_PREDICATE)
            report = doc["predicate"].get("modelpack")
        else:
            report = canonical.loads(payload)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ContentError(f"test report {referrer.digest} cannot be read: {e}") from None
    if not isinstance(report, dict):
        raise ContentError(f"test report {referrer.digest} holds no report object")
    return report


def check_test_evidence(
    target: Target,
    index_digest: str,
    keys: Iterable[PublicKey],
    runtime: str | None = None,
    shortfalls: Callable[[Mapping[str, Any]], Sequence[str]] | None = None,
) -> Check:
    """The newest test report of `index_digest` (of `runtime` when given): signed by one of `keys` when
    keys are given, a statement over exactly `index_digest`, passed, and (when `shortfalls` is given)
    lacking nothing it names in the report the statement carries."""
    keys = list(keys)
    found = [
        d
        for d in target.referrers(index_digest, evidence.REPORT_TYPE)
        if d.artifact_type == evidence.REPORT_TYPE and (runtime is None or evidence.runtime_of(d) == runtime)
    ]
    if not found:
        where = f" by the {runtime} runtime" if runtime else ""
        return Check("test", False, f"no test report{where} attached to {_short(index_digest)}")
    newest = max(found, key=lambda d: ((d.annotations or {}).get(evidence.ANN_CREATED, ""), d.digest))
    try:
        media_type, payload = evidence.read_layer(target, newest)
    except NotFoundError:
        return Check(
            "test", False, f"test report {_short(newest.digest)} is listed but its content is missing"
        )
    except BAD_CONTENT as e:
        return Check(
            "test", False, f"test report {_short(newest.digest)} cannot be read: {e}", evidence=newest.digest
        )
    if media_type != mt.DSSE_ENVELOPE:
        if shortfalls is not None:  # plain JSON from before evidence: no statement to hold minimums to
            detail = (
                f"test report {_short(newest.digest)} predates test evidence: its minimums cannot be checked"
            )
            return Check("test", False, detail, evidence=newest.digest)
        return _old_report(newest, payload, index_digest, keys)
    opened = _open(payload, keys, "test report", newest.digest, TEST_RESULT_PREDICATE)
    if isinstance(opened, Check):
        return opened
    envelope, doc = opened
    signer = envelope.verified_by[0] if envelope.verified_by else None
    if index_digest not in subject_digests(doc):
        return _other_subject("test report", newest.digest, doc, index_digest, signer)
    result = doc["predicate"].get("result")
    if result != "PASSED" or (newest.annotations or {}).get(evidence.ANN_PASSED) != "true":
        failed = ", ".join(str(t) for t in doc["predicate"].get("failedTests") or []) or "no passing result"
        return Check(
            "test",
            False,
            f"newest test report {_short(newest.digest)} failed: {failed}",
            signer,
            newest.digest,
        )
    # the annotations are not signed: what the statement says wins over what the listing claimed
    ran = str((doc["predicate"].get("modelpack") or {}).get("runtime") or evidence.runtime_of(newest))
    if runtime is not None and ran != runtime:
        detail = f"test report {_short(newest.digest)} is annotated {runtime} but its statement says {ran}"
        return Check("test", False, detail, signer, newest.digest)
    report = doc["predicate"].get("modelpack")
    short = list(shortfalls(report if isinstance(report, dict) else {})) if shortfalls else []
    if short:
        detail = f"test report {_short(newest.digest)} passed, but {'; '.join(short)}"
        return Check("test", False, detail, signer, newest.digest)
    how = f"signed by {signer[:12]}" if signer else "unsigned"
    return Check(
        "test", True, f"passed ({ran} runtime, {how}) as {_short(newest.digest)}", signer, newest.digest
    )


def check_provenance(target: Target, index_digest: str, keys: Iterable[PublicKey]) -> Check:
    """SLSA provenance of `index_digest`: one over it, signed by one of `keys` when given; the detail names
    the commit it was built from. Every build of the same release attaches one (a warm rebuild in CI, a
    build without the key before one with it), so any one that holds is enough: newest first, and when
    none holds, the newest one's failure is the verdict."""
    keys = list(keys)
    found = [
        d
        for d in target.referrers(index_digest, mt.PROVENANCE_ARTIFACT)
        if d.artifact_type == mt.PROVENANCE_ARTIFACT
    ]
    if not found:
        return Check("provenance", False, f"no SLSA provenance attached to {_short(index_digest)}")
    found.sort(key=lambda d: ((d.annotations or {}).get(mt.ANN_CREATED, ""), d.digest), reverse=True)
    verdicts = [_provenance(target, d, index_digest, keys) for d in found[:MAX_CANDIDATES]]
    return next((v for v in verdicts if v.ok), verdicts[0])


def _provenance(target: Target, newest: Descriptor, index_digest: str, keys: list[PublicKey]) -> Check:
    try:
        _, payload = evidence.read_layer(target, newest)
    except (*BAD_CONTENT, NotFoundError) as e:
        return Check(
            "provenance",
            False,
            f"provenance {_short(newest.digest)} cannot be read: {e}",
            evidence=newest.digest,
        )
    opened = _open(payload, keys, "provenance", newest.digest, SLSA_PREDICATE, kind="provenance")
    if isinstance(opened, Check):
        return opened
    envelope, doc = opened
    signer = envelope.verified_by[0] if envelope.verified_by else None
    if index_digest not in subject_digests(doc):
        return _other_subject("provenance", newest.digest, doc, index_digest, signer, kind="provenance")
    commit = commit_of(doc["predicate"])
    builder = ((doc["predicate"].get("runDetails") or {}).get("builder") or {}).get("id", "?")
    built = f"built from commit {commit[:12]}" if commit else "built from no git commit"
    how = f"signed by {signer[:12]}" if signer else "unsigned"
    return Check("provenance", True, f"{built} by {builder} ({how})", signer, newest.digest)


def check_sbom(target: Target, index_digest: str) -> Check:
    """The newest CycloneDX SBOM of `index_digest`: a CycloneDX document whose release component is it."""
    newest = _newest(target, index_digest, mt.SBOM_ARTIFACT)
    if newest is None:
        return Check("sbom", False, f"no CycloneDX SBOM attached to {_short(index_digest)}")
    try:
        _, payload = evidence.read_layer(target, newest, max_size=16 * 1024 * 1024)
        doc = canonical.loads(payload)
    except (*BAD_CONTENT, NotFoundError, ValueError) as e:
        return Check(
            "sbom", False, f"SBOM {_short(newest.digest)} cannot be read: {e}", evidence=newest.digest
        )
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        return Check(
            "sbom", False, f"SBOM {_short(newest.digest)} is not a CycloneDX document", evidence=newest.digest
        )
    root = (doc.get("metadata") or {}).get("component") or {}
    named = {f"sha256:{h.get('content')}" for h in root.get("hashes") or [] if h.get("alg") == "SHA-256"}
    if index_digest not in named:
        described = ", ".join(sorted(named)) or "no digest"
        detail = f"SBOM {_short(newest.digest)} describes {described}, not {index_digest}"
        return Check("sbom", False, detail, evidence=newest.digest)
    components = doc.get("components") or []
    packages = sum(1 for c in components if c.get("type") == "library")
    return Check(
        "sbom",
        True,
        f"CycloneDX {doc.get('specVersion')}: {len(components)} components, {packages} Python packages",
        evidence=newest.digest,
    )


def _open(
    payload: bytes,
    keys: list[PublicKey],
    what: str,
    digest: str,
    predicate_type: str,
    kind: str = "test",
) -> tuple[Opened, dict[str, Any]] | Check:
    try:
        envelope = open_envelope(payload, keys)
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise ContentError(f"payloadType is {envelope.payload_type!r}, not in-toto")
        doc = parse_statement(envelope.statement(), predicate_type)
    except (ContentError, ValueError) as e:
        return Check(kind, False, f"{what} {_short(digest)} is not a valid attestation: {e}", evidence=digest)
    if keys and not envelope.verified_by:
        claimed = ", ".join(k[:12] for k in envelope.keyids if k) or "nobody"
        why = "unsigned" if not envelope.keyids else f"its signature does not verify (claims {claimed})"
        return Check(
            kind, False, f"{what} {_short(digest)} is not signed by a given key: {why}", evidence=digest
        )
    return envelope, doc


def _other_subject(
    what: str, digest: str, doc: Mapping[str, Any], index_digest: str, signer: str | None, kind: str = "test"
) -> Check:
    over = ", ".join(subject_digests(doc)) or "no digest"
    return Check(kind, False, f"{what} {_short(digest)} is over {over}, not {index_digest}", signer, digest)


def _old_report(d: Descriptor, payload: bytes, index_digest: str, keys: list[PublicKey]) -> Check:
    """A report from before signed evidence: plain JSON, accepted only when no key is required."""
    if keys:
        return Check(
            "test",
            False,
            f"test report {_short(d.digest)} is unsigned (written before signed evidence)",
            evidence=d.digest,
        )
    try:
        body = canonical.loads(payload)
    except ValueError:
        body = None
    said = (body.get("release") or {}).get("digest") if isinstance(body, dict) else None
    if said and said != index_digest:
        return Check(
            "test",
            False,
            f"test report {_short(d.digest)} is for {said}, not {index_digest}",
            evidence=d.digest,
        )
    if (d.annotations or {}).get(evidence.ANN_PASSED) != "true":
        return Check("test", False, f"newest test report {_short(d.digest)} failed", evidence=d.digest)
    return Check(
        "test",
        True,
        f"passed ({evidence.runtime_of(d)} runtime, unsigned) as {_short(d.digest)}",
        evidence=d.digest,
    )


def _newest(target: Target, digest: str, artifact_type: str) -> Descriptor | None:
    found = [d for d in target.referrers(digest, artifact_type) if d.artifact_type == artifact_type]
    return (
        max(found, key=lambda d: ((d.annotations or {}).get(mt.ANN_CREATED, ""), d.digest)) if found else None
    )


def _short(digest: str) -> str:
    return digest[:19]
