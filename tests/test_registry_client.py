"""RegistryRepository against a real distribution 2.8 registry: blobs, manifests, tags, referrers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.registry_helpers import Requests, blob, client_for, opener, push_artifact, random_bytes

from modelpack.errors import NotFoundError
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes
from modelpack.oci.model import Manifest, parse
from modelpack.oci.target import Progress, RawManifest, Target
from modelpack.registry import RegistryRepository, UploadOptions, push_blobs


def test_push_pull_multilayer_artifact_round_trips(registry, repo, tmp_path: Path) -> None:
    layers = [random_bytes(300_000), random_bytes(1024), b"", random_bytes(70_000)]
    with client_for(registry.host) as client:
        target: Target = RegistryRepository(client, repo)
        rm = push_artifact(target, "1.0", layers)  # type: ignore[arg-type]
        got = target.get_manifest("1.0")
        assert got.raw == rm.raw and got.digest == rm.digest
        assert got.media_type == mediatypes.OCI_MANIFEST
        manifest = parse(got.raw)
        assert isinstance(manifest, Manifest)
        for desc, data in zip(manifest.layers, layers, strict=True):
            with target.read_blob(desc) as chunks:
                assert b"".join(chunks) == data
            dest = tmp_path / desc.digest.replace(":", "-")
            RegistryRepository(client, repo).download_blob(desc, dest)
            assert dest.read_bytes() == data


def test_head_skip_sends_no_blob_twice(registry, repo) -> None:
    data = random_bytes(200_000)
    desc = blob(data)
    events: list[Progress] = []
    counter = Requests()
    with client_for(registry.host, event_hooks={"request": [counter]}) as client:
        r = RegistryRepository(client, repo)
        assert r.push_blob(desc, opener(data)).how == "upload"
        assert r.push_blob(desc, opener(data), events.append).how == "skip"
    assert events == [Progress(desc.digest, desc.size, desc.size, "skip")]
    assert counter.count("POST", "/blobs/uploads/") == 1
    assert counter.count("PUT", "/blobs/uploads/") == 1
    assert counter.count("HEAD", "/blobs/") == 2


def test_mount_from_another_repository(registry, repo) -> None:
    data = random_bytes(100_000)
    desc = blob(data)
    counter = Requests()
    with client_for(registry.host, event_hooks={"request": [counter]}) as client:
        RegistryRepository(client, repo).push_blob(desc, opener(data))
        other = RegistryRepository(client, repo + "-other")
        result = other.push_blob(desc, opener(data), mount_from=repo)
        assert result.how == "mount" and result.bytes_sent == 0
        assert other.has_blob(desc.digest)
    assert counter.count("PUT", "/blobs/uploads/") == 1  # only the first upload sent bytes


def test_chunked_upload_above_threshold(registry, repo) -> None:
    data = random_bytes(1_000_000)
    desc = blob(data)
    counter = Requests()
    options = UploadOptions(monolithic_max=100_000, chunk_size=300_000)
    events: list[Progress] = []
    with client_for(registry.host, event_hooks={"request": [counter]}) as client:
        r = RegistryRepository(client, repo, upload=options)
        result = r.push_blob(desc, opener(data), events.append)
        assert result.how == "upload" and result.bytes_sent == len(data)
        with r.read_blob(desc) as chunks:
            assert hashlib.sha256(b"".join(chunks)).hexdigest() == digests.hex_part(desc.digest)
    assert counter.count("PATCH") == 4  # 300k, 300k, 300k, 100k
    assert events[-1].done == len(data)


def test_write_blob_from_a_one_shot_stream(registry, repo) -> None:
    data = random_bytes(700_000)
    desc = blob(data)
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo, upload=UploadOptions(chunk_size=256 * 1024))
        r.write_blob(desc, iter([data[i : i + 10_000] for i in range(0, len(data), 10_000)]))
        with r.read_blob(desc) as chunks:
            assert b"".join(chunks) == data


def test_retag_keeps_the_digest_byte_identical(registry, repo) -> None:
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        # Non-canonical bytes (spaces, key order): a re-serialising client would change the digest.
        config = b'{"a": 1}'
        r.push_blob(blob(config, mediatypes.OCI_CONFIG), opener(config))
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "layers": [],
                "config": blob(config, mediatypes.OCI_CONFIG).to_json(),
            },
            indent=3,
        ).encode()
        original = RawManifest(raw, mediatypes.OCI_MANIFEST, digests.of_bytes(raw))
        assert r.put_manifest("v1", original) == original.digest
        fetched = r.get_manifest("v1")
        assert r.put_manifest("prod", fetched) == original.digest
        assert r.get_manifest("prod").raw == raw
        assert r.resolve("prod").digest == original.digest
        assert r.get_manifest(original.digest).raw == raw


def test_list_tags_with_page_size(registry, repo) -> None:
    # distribution 2.8 ignores `n` for tags (it paginates only the catalog); Link pagination itself is
    # exercised against a scripted server in test_registry_faults.py.
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        rm = push_artifact(r, "t0", [b"x"])
        tags = [f"t{i}" for i in range(7)]
        for tag in tags[1:]:
            r.put_manifest(tag, rm)
        assert sorted(r.list_tags(page_size=3)) == sorted(tags)
        assert sorted(r.list_tags()) == sorted(tags)


def test_missing_tag_and_repository_are_not_found(registry, repo) -> None:
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        with pytest.raises(NotFoundError, match=rf"tag 1\.2 not found in {registry.host}/{repo}"):
            r.get_manifest("1.2")
        with pytest.raises(NotFoundError, match="repository"):
            r.list_tags()


def test_referrers_fallback_tag_on_distribution(registry, repo) -> None:
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        subject = push_artifact(r, "1.0", [b"weights"])
        assert r.referrers(subject.digest) == []
        subject_desc = parse(subject.raw).descriptor()
        reports = []
        for kind, text in [
            (mediatypes.TEST_REPORT_ARTIFACT, b"pass"),
            (mediatypes.PROMOTION_EVENT_ARTIFACT, b"p"),
        ]:
            rm = push_artifact(
                r,
                f"tmp-{len(reports)}",
                [text],
                artifact_type=kind,
                subject=subject_desc,
                annotations={"k": kind},
            )
            # The manifest write itself lists it in the fallback tag; writing it again adds no duplicate.
            r.put_manifest(rm.digest, rm)
            reports.append(parse(rm.raw).descriptor(artifact_type=kind, annotations={"k": kind}))
        assert r.referrers(subject.digest) == reports
        only = r.referrers(subject.digest, artifact_type=mediatypes.TEST_REPORT_ARTIFACT)
        assert [d.digest for d in only] == [reports[0].digest]
        assert only[0].annotations == {"k": mediatypes.TEST_REPORT_ARTIFACT}
        index = r.get_manifest("sha256-" + digests.hex_part(subject.digest))
        assert index.media_type == mediatypes.OCI_INDEX


def test_delete_tag_keeps_sibling_tags(registry, repo) -> None:
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        rm = push_artifact(r, "v1", [b"model"])
        r.put_manifest("prod", rm)
        r.put_manifest("staging", rm)
        r.delete_tag("staging")
        assert sorted(r.list_tags()) == ["prod", "v1"]
        assert r.get_manifest("prod").raw == rm.raw
        assert r.get_manifest("v1").digest == rm.digest
        with pytest.raises(NotFoundError):
            r.get_manifest("staging")


def test_parallel_push_reports_progress(registry, repo) -> None:
    datas = [random_bytes(50_000 + i) for i in range(6)]
    events: list[Progress] = []
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        results = push_blobs(r, [(blob(d), opener(d)) for d in datas], events.append, workers=4)
        assert [x.how for x in results] == ["upload"] * 6
        assert all(r.has_blob(blob(d).digest) for d in datas)
        again = push_blobs(r, [(blob(d), opener(d)) for d in datas], events.append)
        assert [x.how for x in again] == ["skip"] * 6
    finished = {e.digest for e in events if e.done == e.total and e.what == "blob"}
    assert finished == {blob(d).digest for d in datas}


def test_independent_peers_read_what_we_pushed(registry, repo, tmp_path: Path) -> None:
    import shutil
    import subprocess

    import oras.client

    weights, code = random_bytes(30_000), b"print('hi')\n"
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        config = b'{"model":"test"}'
        r.push_blob(blob(config, mediatypes.OCI_CONFIG), opener(config))
        layers = []
        for name, data in [("weights.bin", weights), ("handler.py", code)]:
            d = blob(data)
            r.push_blob(d, opener(data))
            layers.append(d.with_annotations({mediatypes.ANN_TITLE: name}))
        raw = Manifest(config=blob(config, mediatypes.OCI_CONFIG), layers=tuple(layers)).to_bytes()
        r.put_manifest("1.0", RawManifest(raw, mediatypes.OCI_MANIFEST, digests.of_bytes(raw)))
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo (Debian package) is part of the test environment"
    inspected = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:1.0"],
        capture_output=True,
        check=True,
    ).stdout
    assert inspected == raw
    files = oras.client.OrasClient(hostname=registry.host, insecure=True).pull(
        target=f"{registry.host}/{repo}:1.0", outdir=str(tmp_path)
    )
    assert sorted(Path(f).name for f in files) == ["handler.py", "weights.bin"]
    assert (tmp_path / "weights.bin").read_bytes() == weights
    assert (tmp_path / "handler.py").read_bytes() == code
