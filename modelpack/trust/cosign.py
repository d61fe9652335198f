"""The release signature: cosign's signing statement over the release index digest, in a key-signed
Sigstore bundle, the format `cosign sign --new-bundle-format` attaches as an OCI 1.1 referrer.

The statement names the signed manifest by its sha256 only (the digest is the release: tags move, digests
do not), with cosign's predicate type, so registry-side policy engines that read cosign bundles read this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelpack.errors import ContentError
from modelpack.trust import sigstore_bundle
from modelpack.trust.check import Check
from modelpack.trust.keys import PrivateKey, PublicKey

PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
KIND = "signature"
# How a verdict says "signed, but by a key nobody asked about": not a forgery, only not trusted here.
NOT_GIVEN = "not by a given key"
NOT_CHECKED = "not checked, pass --key"


def sign_digest(key: PrivateKey, digest: str, name: str) -> bytes:
    """The bundle signing `digest` ("sha256:<hex>") of the manifest `name` (a repository, informative)."""
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or not hexpart:
        raise ContentError(f"cannot sign {digest}: only sha256 digests are signed")
    statement = {
        "_type": sigstore_bundle.IN_TOTO_STATEMENT,
        "subject": [{"name": name, "digest": {"sha256": hexpart}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {},
    }
    return sigstore_bundle.seal_statement(statement, key)


def check_digest(raw: bytes, digest: str, keys: Sequence[PublicKey]) -> Check:
    """Whether `raw` is a release signature over exactly `digest` by one of `keys`."""
    opened = sigstore_bundle.open_statement(
        raw, keys, PREDICATE_TYPE, kind=KIND, what="release signature", named="a cosign signature"
    )
    if isinstance(opened, Check):
        return opened
    signed = _subject_digests(opened.statement)
    if f"sha256:{digest.partition(':')[2]}" not in signed:
        over = ", ".join(signed) or "nothing"
        return Check(KIND, False, f"the release signature is over {over}, not over this release {digest}")
    return signer_verdict(KIND, opened, keys, "release")


def signer_verdict(kind: str, opened: sigstore_bundle.Opened, keys: Sequence[PublicKey], what: str) -> Check:
    """The verdict on who signed, once the content is known to be the right one."""
    if opened.verified_by:
        keyid = opened.verified_by[0]
        source = next(k.source for k in keys if k.keyid == keyid)
        return Check(kind, True, f"{what} signed by {short(keyid)} ({source})", signer=keyid)
    claimed = opened.signer_claimed
    if not keys:
        return Check(kind, False, f"{what} signed by {short(claimed)}: {NOT_CHECKED} with its .pub")
    if any(k.keyid == claimed for k in keys):
        changed = "does not verify: the signed content was changed"
        return Check(kind, False, f"{what} signature by {short(claimed)} {changed}")
    given = ", ".join(f"{short(k.keyid)} ({k.source})" for k in keys)
    return Check(kind, False, f"{what} signed by {short(claimed)}, {NOT_GIVEN}: {given}")


def is_foreign(check: Check) -> bool:
    """A failed verdict that only says the signer is not one of the given keys."""
    return not check.ok and (NOT_GIVEN in check.detail or NOT_CHECKED in check.detail)


def short(keyid: str) -> str:
    return keyid[:12]


def _subject_digests(statement: Mapping[str, Any]) -> list[str]:
    subjects = statement.get("subject")
    out = []
    for s in subjects if isinstance(subjects, list) else []:
        d = s.get("digest") if isinstance(s, dict) else None
        if isinstance(d, dict) and isinstance(d.get("sha256"), str):
            out.append(f"sha256:{d['sha256']}")
    return out
