"""Attach a small artifact (a test report, a promotion event) to a release as an OCI referrer.

The artifact is a manifest whose `subject` is the release index and whose one layer is the payload; the
registry's referrers API lists it, and on registries without that API (distribution 2.8) the client keeps
the `sha256-<hex>` fallback tag index up to date. Annotations carry the payload's summary so a listing
answers most questions without fetching a blob.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.registry.client import RegistryRepository

EMPTY_CONFIG = Descriptor.of(mt.OCI_EMPTY, mt.EMPTY_JSON)


def attach(
    target: Target,
    subject: Descriptor,
    artifact_type: str,
    payload: bytes,
    payload_media_type: str,
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """Writes payload and manifest (blobs first) and registers the referrer; returns its descriptor."""
    payload_desc = Descriptor.of(payload_media_type, payload)
    target.write_blob(EMPTY_CONFIG, [mt.EMPTY_JSON])
    target.write_blob(payload_desc, [payload])
    manifest = Manifest(
        config=EMPTY_CONFIG,
        layers=(payload_desc,),
        artifact_type=artifact_type,
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        annotations=dict(annotations or {}),
    )
    raw = manifest.to_bytes()
    target.put_manifest(manifest.digest, RawManifest(raw, manifest.media_type, manifest.digest))
    desc = manifest.descriptor(artifact_type=artifact_type, annotations=dict(annotations or {}))
    if isinstance(target, RegistryRepository):
        target.add_referrer(desc, subject.digest)
    return desc


def read_payload(target: Target, referrer: Descriptor, max_size: int = 4 * 1024 * 1024) -> bytes:
    """The payload of an attached artifact (its single layer), verified."""
    raw = target.get_manifest(referrer.digest)
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Manifest) or len(doc.layers) != 1 or doc.layers[0].size > max_size:
        raise InputError(f"referrer {referrer.digest} is not a single-payload artifact")
    with target.read_blob(doc.layers[0]) as chunks:
        return b"".join(chunks)
