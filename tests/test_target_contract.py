"""The Target contract (oci/target.py), one conformance suite over all three kinds a verb can be handed: a
registry repository (the real registry), an OCI layout directory and a repository of the local store.
Copy, promote, prune and the rest are written once against this protocol; this is what they rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.places import Kind

from modelpack.errors import DigestMismatchError, NotFoundError
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.target import RawManifest, Target
from modelpack.store.layout import LayoutStore

ARTIFACT = "application/vnd.modelpack.contract-test.v1+json"


def _blob(target: Target, data: bytes, media_type: str = mt.OCI_LAYER_TAR) -> Descriptor:
    desc = Descriptor.of(media_type, data)
    target.write_blob(desc, [data[: len(data) // 2], data[len(data) // 2 :]])
    return desc


def _manifest(target: Target, payload: bytes, subject: Descriptor | None = None) -> RawManifest:
    config = _blob(target, mt.EMPTY_JSON, mt.OCI_EMPTY)
    layer = _blob(target, payload)
    doc = Manifest(
        config=config, layers=(layer,), artifact_type=ARTIFACT if subject else None, subject=subject
    )
    raw = doc.to_bytes()
    return RawManifest(raw, doc.media_type, doc.digest)


def _read(target: Target, desc: Descriptor) -> bytes:
    with target.read_blob(desc) as chunks:
        return b"".join(chunks)


def test_blobs_round_trip_resume_and_refuse_a_wrong_digest(kind: Kind) -> None:
    target = kind.place.target
    data = b"weights " * 10_000
    desc = _blob(target, data)
    assert target.has_blob(desc.digest)
    assert _read(target, desc) == data
    assert b"".join(target.read_blob_at(desc, 70_000)) == data[70_000:]

    lying = Descriptor(mt.OCI_LAYER_TAR, digests.of_bytes(b"other"), 5)
    with pytest.raises(DigestMismatchError):
        target.write_blob(lying, [b"bytes"])
    assert not target.has_blob(lying.digest)  # nothing kept under a digest the bytes do not have
    with pytest.raises(NotFoundError):
        b"".join(target.read_blob_at(lying, 0))


def test_manifests_by_tag_and_digest_keep_their_exact_bytes(kind: Kind) -> None:
    target = kind.place.target
    first = _manifest(target, b"one")
    # not canonical JSON on purpose: a target stores and returns the bytes it was given
    spaced = RawManifest(
        first.raw.replace(b",", b", "), first.media_type, digests.of_bytes(first.raw.replace(b",", b", "))
    )
    assert target.put_manifest("1.0.0", spaced) == spaced.digest
    for ref in ("1.0.0", spaced.digest):
        got = target.get_manifest(ref)
        assert (got.raw, got.media_type, got.digest) == (spaced.raw, spaced.media_type, spaced.digest)
    with pytest.raises(NotFoundError):
        target.get_manifest("9.9.9")
    with pytest.raises(NotFoundError):
        target.get_manifest(digests.of_bytes(b"never stored"))


def test_deleting_a_tag_keeps_the_manifest_and_its_other_tags(kind: Kind) -> None:
    target = kind.place.target
    m = _manifest(target, b"tagged twice")
    target.put_manifest("1.0.0", m)
    target.put_manifest("latest", m)
    assert {"1.0.0", "latest"} <= set(target.list_tags())
    target.delete_tag("latest")
    assert "latest" not in target.list_tags() and "1.0.0" in target.list_tags()
    assert target.get_manifest(m.digest).raw == m.raw
    assert target.get_manifest("1.0.0").digest == m.digest


def test_referrers_list_what_names_a_subject_filtered_by_type(kind: Kind) -> None:
    target = kind.place.target
    subject_raw = _manifest(target, b"the release")
    target.put_manifest("1.0.0", subject_raw)
    subject = Descriptor(subject_raw.media_type, subject_raw.digest, len(subject_raw.raw))
    referrer = _manifest(target, json.dumps({"passed": True}).encode(), subject=subject)
    target.put_manifest(referrer.digest, referrer)
    listed = target.referrers(subject.digest)
    assert [d.digest for d in listed] == [referrer.digest]
    assert listed[0].artifact_type == ARTIFACT
    assert [d.digest for d in target.referrers(subject.digest, ARTIFACT)] == [referrer.digest]
    assert target.referrers(subject.digest, "application/vnd.other") == []
    assert target.referrers(referrer.digest) == []


def test_a_blob_copied_from_another_target_is_skipped_the_second_time(kind: Kind, tmp_path: Path) -> None:
    target = kind.place.target
    source = LayoutStore(tmp_path / "source")
    data = b"copied " * 5_000
    desc = _blob(source, data)
    first = target.copy_blob_from([source], desc)
    assert first.how in ("upload", "mount") and first.digest == desc.digest
    assert _read(target, desc) == data
    again = target.copy_blob_from([source], desc)
    assert (again.how, again.bytes_sent) == ("skip", 0)
