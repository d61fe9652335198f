"""Signatures attached to a release, and their checks: the release signature (cosign's statement over the
release digest, a referrer of the release index) and the OpenSSF model signature (over the bundle's
files, a referrer of the bundle manifest).

Both are Sigstore bundles attached as cosign attaches its new-format bundles: artifactType is the bundle's
media type, the single layer is the bundle, and `dev.sigstore.bundle.predicateType` says which statement
is inside, so a listing tells the two apart without fetching either. A bundle-only release (no index) has
both on its one manifest.

The model signature is checked against the files themselves, rehashed by streaming the bundle's layers
(never written to disk): a signature attached to the wrong manifest, or over other files, fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from modelpack.errors import InputError, ModelpackError, VerificationError
from modelpack.evidence.evidence import attach, read_payload
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.target import ProgressFn, Target, no_progress
from modelpack.trust import cosign, oms
from modelpack.trust.check import Check
from modelpack.trust.keys import PrivateKey, PublicKey
from modelpack.trust.sigstore_bundle import MAX_BUNDLE_BYTES

# Exactly what `unpack` writes by default: every layer kind with an unpack group (the record stays out).
SIGNED_LAYERS = frozenset(t for t, kind in mt.LAYER_KINDS.items() if kind.group)
# The keyid the signer claims, on the referrer descriptor: `inspect` names signers from a listing alone.
ANN_KEYID = "dev.modelpack.signature.keyid"


class Signable(Protocol):
    """What signing reads of a release (release/view.py's ReleaseView is one): evidence sits below the read
    model, which lists evidence for `ls`."""

    @property
    def digest(self) -> str: ...
    @property
    def media_type(self) -> str: ...
    @property
    def is_index(self) -> bool: ...
    @property
    def bundle(self) -> Descriptor: ...
    @property
    def bundle_manifest(self) -> Manifest | None: ...


@dataclass(frozen=True)
class Listed:
    kind: str  # "release" | "model"
    digest: str  # of the referrer
    keyid: str | None  # claimed, not verified: `verify` checks

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "digest": self.digest, "keyid": self.keyid}


@dataclass(frozen=True)
class Signed:
    release_signature: Descriptor | None  # the referrer written on the release index
    model_signature: Descriptor | None  # the referrer written on the bundle manifest
    files: int  # files the model signature covers

    def to_json(self) -> dict[str, object]:
        return {
            "releaseSignature": self.release_signature.digest if self.release_signature else None,
            "modelSignature": self.model_signature.digest if self.model_signature else None,
            "files": self.files,
        }


def sign(
    target: Target,
    release: Signable,
    key: PrivateKey,
    *,
    name: str,
    release_signature: bool = True,
    model_signature: bool = True,
    progress: ProgressFn = no_progress,
) -> Signed:
    """Signs `release` (its index digest, and its bundle's files) with `key`; `name` is the repository, the
    statements' informative subject name. The model signature is made first: it costs a read of every
    layer, and a failure there leaves the release unsigned rather than half signed."""
    model_desc, files = None, 0
    if model_signature:
        bundle = _bundle_manifest(target, release)
        digests = bundle_files(target, bundle, progress)
        raw = oms.sign_files(key, name, digests)
        files = len(oms.signed_files(digests))
        keyid = key.public.keyid
        model_desc = _attach(target, release.bundle, raw, oms.PREDICATE_TYPE, "bundle manifest", keyid)
    release_desc = None
    if release_signature:
        subject = Descriptor(release.media_type, release.digest, _root_size(target, release))
        raw = cosign.sign_digest(key, release.digest, name)
        release_desc = _attach(target, subject, raw, cosign.PREDICATE_TYPE, "release", key.public.keyid)
    return Signed(release_desc, model_desc, files)


def verify_release_signature(target: Target, index_digest: str, keys: Sequence[PublicKey]) -> Check:
    """The release signature verdict: ok when one attached signature over exactly `index_digest` verifies
    with one of `keys` and none attached claims a given key and fails (tampered)."""
    found = _found(target, index_digest, cosign.PREDICATE_TYPE)
    checks = [(d, cosign.check_digest(_payload(target, d), index_digest, keys)) for d in found]
    return _verdict(cosign.KIND, "release signature", checks)


def verify_model_signature(
    target: Target, bundle_digest: str, keys: Sequence[PublicKey], progress: ProgressFn = no_progress
) -> Check:
    """The model signature verdict: a signature by one of `keys` over exactly the files of the bundle
    manifest `bundle_digest` (rehashed from its layers)."""
    found = _found(target, bundle_digest, oms.PREDICATE_TYPE)
    if not found:
        return Check(oms.KIND, False, "no model signature attached to the bundle")
    raw = target.get_manifest(bundle_digest)
    bundle = parse(raw.raw, raw.media_type)
    if not isinstance(bundle, Manifest):
        return Check(oms.KIND, False, f"the bundle {bundle_digest} is not a manifest")
    try:
        digests = bundle_files(target, bundle, progress)
    except InputError as e:  # a bundle no signature may cover: a verdict, not an error
        return Check(oms.KIND, False, e.message)
    return _verdict(
        oms.KIND, "model signature", [(d, oms.check_files(_payload(target, d), digests, keys)) for d in found]
    )


def model_signature(target: Target, bundle_digest: str) -> bytes | None:
    """The newest model signature attached to the bundle, as `model.sig` bytes (unchecked), or None."""
    found = _found(target, bundle_digest, oms.PREDICATE_TYPE)
    return _payload(target, found[-1]) if found else None


def classify(referrers: Iterable[Descriptor]) -> tuple[Listed, ...]:
    """The signatures among `referrers` (of the release and of its bundle), release signatures first: for
    a caller that lists referrers anyway (`inspect`, the portal's catalog) and need not list them again."""
    found = [d for d in referrers if _is_signature(d)]
    return tuple(
        Listed(kind_of(d) or "model", d.digest, (d.annotations or {}).get(ANN_KEYID))
        for d in sorted(found, key=lambda d: (_predicate(d) != cosign.PREDICATE_TYPE, d.digest))
    )


def kind_of(d: Descriptor) -> str | None:
    """"release" or "model" for a signature referrer, from its descriptor alone; None for anything else."""
    if not _is_signature(d):
        return None
    return "release" if _predicate(d) == cosign.PREDICATE_TYPE else "model"


def bundle_files(target: Target, bundle: Manifest, progress: ProgressFn = no_progress) -> dict[str, str]:
    """path -> sha256 hex of every file `unpack` would write, streamed from the layers (digests verified
    by the target as each stream ends)."""
    files: dict[str, str] = {}
    for desc in bundle.layers:
        if desc.media_type in SIGNED_LAYERS:
            with target.read_blob(desc) as chunks:
                stream = iter(chunks)
                oms.hash_layer(stream, files)
                for _ in stream:  # tarfile stops at the end marker: read on so the digest is checked
                    pass
    return files


def _verdict(kind: str, what: str, checks: Sequence[tuple[Descriptor, Check]]) -> Check:
    if not checks:
        return Check(kind, False, f"no {what} attached")
    good = [replace(c, evidence=d.digest) for d, c in checks if c.ok]
    bad = [replace(c, evidence=d.digest) for d, c in checks if not c.ok]
    # A signature that claims a given key and does not verify is an attack, even beside a good one;
    # a signature by some other key is only a failure when nothing else verified.
    tampered = [c for c in bad if not cosign.is_foreign(c)]
    if good and not tampered:
        extra = f" (+{len(bad)} by other keys)" if bad else ""
        return replace(good[0], detail=good[0].detail + extra)
    return (tampered or bad)[0]


def _found(target: Target, digest: str, predicate: str) -> list[Descriptor]:
    """Signature referrers of `digest` with `predicate`, oldest first by digest (a stable order)."""
    return sorted(
        (
            d
            for d in target.referrers(digest, mt.SIGSTORE_BUNDLE)
            if _is_signature(d) and _predicate(d) == predicate
        ),
        key=lambda d: d.digest,
    )


def _predicate(d: Descriptor) -> str | None:
    return (d.annotations or {}).get(mt.ANN_BUNDLE_PREDICATE)


def _is_signature(d: Descriptor) -> bool:
    known = (cosign.PREDICATE_TYPE, oms.PREDICATE_TYPE)
    return d.artifact_type == mt.SIGSTORE_BUNDLE and _predicate(d) in known


def _payload(target: Target, referrer: Descriptor) -> bytes:
    return read_payload(target, referrer, max_size=MAX_BUNDLE_BYTES)


def _attach(
    target: Target, subject: Descriptor, raw: bytes, predicate: str, what: str, keyid: str
) -> Descriptor:
    annotations = {
        mt.ANN_BUNDLE_CONTENT: "dsse-envelope",
        mt.ANN_BUNDLE_PREDICATE: predicate,
        ANN_KEYID: keyid,
    }
    try:
        return attach(target, subject, mt.SIGSTORE_BUNDLE, raw, mt.SIGSTORE_BUNDLE, annotations)
    except ModelpackError as e:
        raise VerificationError(
            f"{target.describe()} refused the {what} signature ({e.message}): the release is not signed",
            hint="check that the registry accepts OCI 1.1 artifacts with a subject, and your push rights",
        ) from None


def _bundle_manifest(target: Target, release: Signable) -> Manifest:
    if release.bundle_manifest is not None:
        return release.bundle_manifest
    raw = target.get_manifest(release.bundle.digest)
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Manifest):
        raise VerificationError(f"the bundle {release.bundle.digest} is not a manifest: nothing to sign")
    return doc


def _root_size(target: Target, release: Signable) -> int:
    if not release.is_index:
        return release.bundle.size
    return len(target.get_manifest(release.digest).raw)
