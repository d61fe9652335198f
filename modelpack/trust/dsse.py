"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, v1.0): the signed wrapper of every in-toto
statement modelpack writes (test evidence, provenance) and of the OpenSSF model signature.

The signature covers PAE(payloadType, payload), never the JSON around it, so re-encoding an envelope
cannot change what was signed. An unsigned envelope (no key given) is still an envelope, with an empty
`signatures` list: the same reader takes both, and `verify` says "unsigned" instead of failing to parse.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.trust.keys import PrivateKey, PublicKey

IN_TOTO_PAYLOAD_TYPE = mt.IN_TOTO_PAYLOAD


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def seal(payload: bytes, key: PrivateKey | None, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict[str, Any]:
    """The envelope of `payload`, signed by `key` when given."""
    signatures = []
    if key is not None:
        sig = key.sign(pae(payload_type, payload))
        signatures.append({"keyid": key.public.keyid, "sig": base64.b64encode(sig).decode()})
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": signatures,
    }


@dataclass(frozen=True)
class Opened:
    payload_type: str
    payload: bytes
    keyids: tuple[str, ...]  # the keyids the envelope claims, verified or not
    verified_by: tuple[str, ...]  # keyids of the given keys whose signature verified

    def statement(self) -> Mapping[str, Any]:
        """The payload as an in-toto statement (a JSON object)."""
        try:
            doc = canonical.loads(self.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ContentError(f"DSSE payload is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ContentError("DSSE payload is not a JSON object")
        return doc


def open_envelope(raw: bytes | Mapping[str, Any], keys: Iterable[PublicKey] = ()) -> Opened:
    """Parses an envelope and checks each signature against each key (a key verifies a signature or it
    does not; the keyid is a hint, never trusted on its own)."""
    doc = canonical.loads(raw) if isinstance(raw, bytes | bytearray) else raw
    if not isinstance(doc, Mapping):
        raise ContentError("DSSE envelope is not a JSON object")
    try:
        payload_type = doc["payloadType"]
        payload = base64.b64decode(doc["payload"], validate=True)
        sigs = [(s.get("keyid", ""), base64.b64decode(s["sig"], validate=True)) for s in doc["signatures"]]
    except (KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise ContentError(f"malformed DSSE envelope: {e}") from None
    if not isinstance(payload_type, str):
        raise ContentError("malformed DSSE envelope: payloadType is not a string")
    message = pae(payload_type, payload)
    keys = list(keys)
    verified = tuple(k.keyid for k in keys if any(k.verify(sig, message) for _, sig in sigs))
    return Opened(payload_type, payload, tuple(str(k) for k, _ in sigs), verified)
