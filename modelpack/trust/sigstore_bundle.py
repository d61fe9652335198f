"""Sigstore bundles (v0.3) holding a DSSE envelope signed by a key: the one container of both signatures
modelpack writes, the release signature (cosign's statement over the index digest) and the OpenSSF
model signature (model-signing's statement over the files).

A key-signed bundle carries no certificate and no transparency-log entry: its verification material is
the key's hint (the keyid, the sha256 of the public PEM, as model-signing writes it), and a verifier is
handed the public key. `@sigstore/verify`, cosign and model-signing all read this shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.trust import dsse
from modelpack.trust.check import Check
from modelpack.trust.keys import PrivateKey, PublicKey

MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # a model with 100k files makes a ~10 MiB statement; nothing bigger
IN_TOTO_STATEMENT = "https://in-toto.io/Statement/v1"


def wrap(envelope: Mapping[str, Any], keyid: str) -> bytes:
    """The bundle JSON around a signed DSSE envelope."""
    doc = {
        "mediaType": mt.SIGSTORE_BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": keyid}, "tlogEntries": []},
        "dsseEnvelope": dict(envelope),
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def seal_statement(statement: Mapping[str, Any], key: PrivateKey) -> bytes:
    """A bundle whose envelope carries `statement`, signed by `key`."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    return wrap(dsse.seal(payload, key), key.public.keyid)


@dataclass(frozen=True)
class Opened:
    hint: str | None  # the keyid the bundle names
    statement: Mapping[str, Any]
    envelope: dsse.Opened

    @property
    def verified_by(self) -> tuple[str, ...]:
        return self.envelope.verified_by

    @property
    def signer_claimed(self) -> str:
        return self.hint or next(iter(self.envelope.keyids), "") or "an unnamed key"


def open_bundle(raw: bytes, keys: Iterable[PublicKey] = ()) -> Opened:
    """Parses a key-signed bundle and checks its envelope's signature against each key. Raises
    ContentError for anything that is not such a bundle with an in-toto statement inside."""
    if len(raw) > MAX_BUNDLE_BYTES:
        raise ContentError(f"the signature bundle is over {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB")
    try:
        doc = canonical.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContentError(f"the signature bundle is not JSON: {e}") from None
    if not isinstance(doc, dict) or not str(doc.get("mediaType", "")).startswith(mt.SIGSTORE_BUNDLE_FAMILY):
        raise ContentError("not a Sigstore bundle (no Sigstore bundle mediaType)")
    envelope = doc.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise ContentError("the Sigstore bundle holds no DSSE envelope")
    material = doc.get("verificationMaterial")
    hint = None
    if isinstance(material, dict) and isinstance(material.get("publicKey"), dict):
        found = material["publicKey"].get("hint")
        hint = found if isinstance(found, str) else None
    opened = dsse.open_envelope(envelope, keys)
    if opened.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        raise ContentError(f"the signed payload is {opened.payload_type!r}, not an in-toto statement")
    statement = opened.statement()
    if statement.get("_type") != IN_TOTO_STATEMENT:
        raise ContentError(f"the signed statement's _type is {statement.get('_type')!r}, not in-toto v1")
    return Opened(hint, statement, opened)


def open_statement(
    raw: bytes, keys: Iterable[PublicKey], predicate: str, *, kind: str, what: str, named: str
) -> Opened | Check:
    """The bundle `raw` opened, when it holds a statement of `predicate`; else the failed verdict of
    `kind` saying why: unreadable (`what`), or a statement of another kind (not `named`)."""
    try:
        opened = open_bundle(raw, keys)
    except ContentError as e:
        return Check(kind, False, f"unreadable {what}: {e}")
    found = opened.statement.get("predicateType")
    if found != predicate:
        return Check(kind, False, f"not {named} (predicate {found!r})")
    return opened
