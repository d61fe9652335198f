"""The local store: an OCI image layout directory, on real files, read back by skopeo."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import support.schemacheck as schemacheck

from modelpack.errors import DigestMismatchError, NotFoundError, StoreError, UsageError
from modelpack.oci import digest, mediatypes
from modelpack.oci.copy import copy_graph
from modelpack.oci.model import Descriptor, Index, Manifest, Platform
from modelpack.oci.target import Progress, RawManifest, Target
from modelpack.store.layout import LayoutStore, default_store_path


def _artifact(store: LayoutStore, payload: bytes, **kw: object) -> Manifest:
    config = store.put_blob_bytes(b"{}", mediatypes.OCI_EMPTY)
    layer = store.put_blob_bytes(payload, mediatypes.MODEL_WEIGHT_TAR)
    return Manifest(config=config, layers=(layer,), artifact_type=mediatypes.MODEL_ARTIFACT, **kw)  # type: ignore[arg-type]


def _check_layout(root: Path) -> None:
    schemacheck.validate_layout(json.loads((root / "oci-layout").read_bytes()))
    index = json.loads((root / "index.json").read_bytes())
    schemacheck.validate_index(index)
    for entry in index["manifests"]:
        raw = (root / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()
        assert digest.of_bytes(raw) == entry["digest"] and len(raw) == entry["size"]
        if entry["mediaType"] == mediatypes.OCI_MANIFEST:
            schemacheck.validate_manifest(json.loads(raw))
        else:
            schemacheck.validate_index(json.loads(raw))


def test_is_a_target_and_created_on_first_write(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")
    target: Target = store
    assert target.list_tags() == [] and not (tmp_path / "store").exists()  # reads create nothing
    with pytest.raises(NotFoundError, match="tag 'v1'"):
        store.get_manifest("v1")
    with pytest.raises(NotFoundError):
        store.delete_tag("v1")
    assert store.gc().removed_blobs == 0 and not (tmp_path / "store").exists()
    store.put_blob_bytes(b"x")
    assert {"blobs", "index.json", "oci-layout"} <= {p.name for p in (tmp_path / "store").iterdir()}
    _check_layout(tmp_path / "store")


def test_blob_and_manifest_round_trip_keeps_exact_bytes(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    desc = store.put_blob_bytes(b"weights" * 1000, mediatypes.MODEL_WEIGHT_TAR)
    assert store.has_blob(desc.digest)
    assert store.blob_path(desc.digest) == tmp_path / "blobs" / "sha256" / digest.hex_part(desc.digest)
    with store.read_blob(desc) as chunks:
        assert b"".join(chunks) == b"weights" * 1000

    # the resumable read a copy re-opens at the receiver's offset, across chunk boundaries
    big = os.urandom(3 * digest.CHUNK + 17)
    big_desc = store.put_blob_bytes(big)
    assert b"".join(store.read_blob_at(big_desc, digest.CHUNK + 5)) == big[digest.CHUNK + 5 :]
    assert b"".join(store.read_blob_at(big_desc, len(big))) == b""
    with pytest.raises(NotFoundError, match="is not in"):
        list(store.read_blob_at(Descriptor.of(mediatypes.OCI_LAYER_TAR, b"absent"), 0))

    m = _artifact(store, b"payload", annotations={"k": "v"})
    pretty = json.dumps(m.to_json(), indent=2).encode()  # not canonical: must survive byte for byte
    raw = RawManifest(pretty, mediatypes.OCI_MANIFEST, digest.of_bytes(pretty))
    assert store.put_manifest("iris:1.0.0", raw) == raw.digest
    assert store.get_manifest("iris:1.0.0") == raw
    assert store.get_manifest(raw.digest) == raw
    assert store.resolve("iris:1.0.0").digest == raw.digest
    assert store.resolve("iris:1.0.0").artifact_type == mediatypes.MODEL_ARTIFACT
    _check_layout(tmp_path)


def test_retag_replaces_and_delete_removes_one_tag(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    a = store.put_document(_artifact(store, b"a"), "prod")
    b = store.put_document(_artifact(store, b"b"), "v2")
    store.put_document(_artifact(store, b"a"), "v1")
    store.put_manifest("prod", store.get_manifest("v2"))
    assert store.tags() == ["prod", "v1", "v2"]
    assert store.resolve("prod").digest == b.digest
    entries = json.loads((tmp_path / "index.json").read_bytes())["manifests"]
    assert [e["annotations"][mediatypes.ANN_REF_NAME] for e in entries].count("prod") == 1
    store.delete_tag("prod")
    assert store.tags() == ["v1", "v2"] and store.resolve("v1").digest == a.digest
    assert store.get_manifest(b.digest).digest == b.digest  # the manifest stays
    with pytest.raises(NotFoundError):
        store.delete_tag("prod")
    with pytest.raises(UsageError, match="invalid tag"):
        store.put_manifest("bad tag!", store.get_manifest("v1"))


def test_wrong_digest_or_size_keeps_nothing(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    wrong = Descriptor(mediatypes.OCI_LAYER_TAR, digest.of_bytes(b"expected"), 8)
    with pytest.raises(DigestMismatchError):
        store.write_blob(wrong, [b"different"[:8]])
    with pytest.raises(DigestMismatchError):
        store.write_blob(wrong, [b"expected", b"+more"])
    with pytest.raises(DigestMismatchError):
        store.write_blob(Descriptor(mediatypes.OCI_LAYER_TAR, digest.of_bytes(b"expected"), 9), [b"expected"])
    assert not store.has_blob(wrong.digest)
    assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []
    raw = _artifact(store, b"x").to_bytes()
    with pytest.raises(DigestMismatchError):
        store.put_manifest("v1", RawManifest(raw, mediatypes.OCI_MANIFEST, digest.of_bytes(b"other")))
    assert store.tags() == [] and not store.has_blob(digest.of_bytes(raw))


def test_manifest_may_name_blobs_held_elsewhere(tmp_path: Path) -> None:
    # A serving image's base layers stay in the base image's repository; the store keeps only ours.
    store = LayoutStore(tmp_path)
    base_layer = Descriptor(mediatypes.OCI_LAYER_GZIP, digest.of_bytes(b"base"), 4)
    m = Manifest(config=store.put_blob_bytes(b"{}", mediatypes.OCI_EMPTY), layers=(base_layer,))
    store.put_document(m, "v1")
    assert store.get_manifest("v1").digest == m.digest
    assert store.gc(grace_seconds=0).removed_blobs == 0


def test_the_copy_engine_copies_a_release_between_layouts(tmp_path: Path) -> None:
    src, dst = LayoutStore(tmp_path / "a"), LayoutStore(tmp_path / "b")
    bundle = _artifact(src, b"bundle")
    src.put_document(bundle)
    index = Index(manifests=(bundle.descriptor(platform=Platform("unknown", "unknown")),))
    src.put_document(index, "1.0.0")
    report = Manifest(
        config=src.put_blob_bytes(b"{}", mediatypes.OCI_EMPTY),
        layers=(src.put_blob_bytes(b'{"ok":1}'),),
        artifact_type=mediatypes.TEST_REPORT_ARTIFACT,
        subject=index.descriptor(),
    )
    src.put_document(report)
    result = copy_graph(src, dst, "1.0.0", "prod", referrers=True)
    assert result.digest == index.digest and result.referrers == 1
    assert dst.tags() == ["prod"] and dst.get_manifest("prod").raw == index.to_bytes()
    assert [d.digest for d in dst.referrers(index.digest)] == [report.digest]
    again = copy_graph(src, dst, "1.0.0", "prod", referrers=True)
    assert again.blobs_copied == 0
    _check_layout(tmp_path / "b")


def test_progress_reports_bytes_and_skips(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    events: list[Progress] = []
    data = b"z" * 3000
    desc = Descriptor.of(mediatypes.OCI_LAYER_TAR, data)
    store.write_blob(desc, [data[:1000], data[1000:]], events.append)
    store.write_blob(desc, [data], events.append)
    assert [(e.done, e.what) for e in events] == [(1000, "blob"), (3000, "blob"), (3000, "skip")]


def test_referrers_found_and_collected_with_their_subject(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    subject = store.put_document(_artifact(store, b"release"), "v1")
    report_cfg = store.put_blob_bytes(b'{"passed":true}', mediatypes.OCI_EMPTY)
    report = Manifest(
        config=report_cfg,
        layers=(report_cfg,),
        artifact_type=mediatypes.TEST_REPORT_ARTIFACT,
        subject=subject,
        annotations={"result": "pass"},
    )
    store.put_document(report)  # by digest: an untagged index.json entry
    assert store.tags() == ["v1"]
    found = store.referrers(subject.digest)
    assert [(d.digest, d.artifact_type, d.annotations["result"]) for d in found] == [
        (report.digest, mediatypes.TEST_REPORT_ARTIFACT, "pass")
    ]
    assert store.referrers(subject.digest, mediatypes.PROMOTION_EVENT_ARTIFACT) == []
    _check_layout(tmp_path)
    assert store.gc(grace_seconds=0).removed_blobs == 0  # the referrer hangs on a live subject
    store.delete_tag("v1")
    result = store.gc(grace_seconds=0)
    assert result.dropped_entries == 1
    assert store.referrers(subject.digest) == []
    assert not store.has_blob(report.digest) and not store.has_blob(subject.digest)


def test_gc_removes_only_unreferenced_blobs(tmp_path: Path) -> None:
    clock = [time.time()]
    store = LayoutStore(tmp_path, clock=lambda: clock[0])
    kept = _artifact(store, b"kept")
    store.put_document(kept, "v1")
    child = _artifact(store, b"child")
    store.put_document(child)  # by digest, no subject: reachable only through the index below
    index = Index(manifests=(child.descriptor(platform=Platform("unknown", "unknown")),))
    store.put_document(index, "release")
    orphan = store.put_blob_bytes(b"orphan" * 100)
    (tmp_path / "blobs" / ".tmp").mkdir(exist_ok=True)
    (tmp_path / "blobs" / ".tmp" / "leftover").write_bytes(b"half a blob")

    young = store.gc()  # default grace: the orphan was written just now, it may belong to a copy
    assert (young.removed_blobs, young.kept_young, young.removed_temp_files) == (0, 1, 1)
    clock[0] += 2 * 3600
    result = store.gc()
    assert (result.removed_blobs, result.freed_bytes) == (1, 600)
    assert not store.has_blob(orphan.digest)
    for d in (kept.config, *kept.layers, *child.layers):
        assert store.has_blob(d.digest)
    assert store.get_manifest("release").digest == index.digest
    assert store.get_manifest(child.digest).digest == child.digest
    store.delete_tag("release")
    assert store.gc(grace_seconds=0).removed_blobs == 3  # the index, the child manifest, its layer
    assert store.has_blob(kept.layers[0].digest) and store.has_blob(kept.config.digest)  # shared config
    _check_layout(tmp_path)


def test_gc_refuses_while_a_blob_is_being_written(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    store.put_blob_bytes(b"x")
    errors: list[Exception] = []

    def chunks() -> Iterator[bytes]:
        yield b"part one"
        try:
            store.gc(grace_seconds=0)
        except StoreError as e:
            errors.append(e)
        yield b"part two"

    desc = Descriptor.of(mediatypes.OCI_LAYER_TAR, b"part onepart two")
    store.write_blob(desc, chunks())
    assert len(errors) == 1 and "busy" in str(errors[0])
    assert store.has_blob(desc.digest)


def _crash_writer(root: str) -> None:
    store = LayoutStore(root)

    def forever() -> Iterator[bytes]:
        while True:
            yield b"x" * 65536
            time.sleep(0.001)

    store.write_blob(Descriptor(mediatypes.OCI_LAYER_TAR, "sha256:" + "1" * 64, 1 << 40), forever())


def test_a_killed_writer_leaves_no_blob_and_gc_cleans_up(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_crash_writer, args=(str(tmp_path),))
    proc.start()
    deadline = time.time() + 20
    tmp_dir = tmp_path / "blobs" / ".tmp"
    while time.time() < deadline and not (
        tmp_dir.is_dir() and any(f.stat().st_size for f in tmp_dir.iterdir())
    ):
        time.sleep(0.05)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert len(list(tmp_dir.iterdir())) == 1
    assert not (tmp_path / "blobs" / "sha256" / ("1" * 64)).exists()
    assert LayoutStore(tmp_path).gc().removed_temp_files == 1
    assert list(tmp_dir.iterdir()) == []


def _tagger(root: str, who: int, n: int) -> None:
    store = LayoutStore(root)
    for i in range(n):
        shared = store.put_blob_bytes(b"shared layer")
        own = store.put_blob_bytes(f"{who}-{i}".encode())
        m = Manifest(config=shared, layers=(own, shared))
        store.put_document(m, f"p{who}-{i}")
        store.put_document(m, "latest")


def test_concurrent_threads_and_processes_keep_every_tag(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_tagger, args=(root, who, 10)) for who in (0, 1)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_tagger, args=(root, who, 10)) for who in (2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = LayoutStore(root)
    expected = {f"p{who}-{i}" for who in range(5) for i in range(10)} | {"latest"}
    assert set(store.tags()) == expected
    for tag in expected:
        m = store.get_manifest(tag)
        assert digest.of_bytes(m.raw) == m.digest
    _check_layout(Path(root))
    assert not list(Path(root).glob(".index.json.*"))


def test_skopeo_reads_what_we_wrote(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    m = _artifact(store, b"for skopeo", annotations={mediatypes.ANN_VERSION: "1.0.0"})
    store.put_document(m, "1.0.0")
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{tmp_path}:1.0.0"], capture_output=True, check=True, timeout=60
    )
    assert out.stdout == m.to_bytes()
    config = subprocess.run(
        ["skopeo", "inspect", "--raw", "--config", f"oci:{tmp_path}:1.0.0"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert config.stdout == b"{}"


def test_skopeo_writes_what_we_read(tmp_path: Path) -> None:
    src = LayoutStore(tmp_path / "src")
    m = _artifact(src, b"round trip")
    src.put_document(m, "v1")
    subprocess.run(
        ["skopeo", "copy", "--insecure-policy", f"oci:{tmp_path / 'src'}:v1", f"oci:{tmp_path / 'dst'}:v2"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    dst = LayoutStore(tmp_path / "dst")
    assert dst.tags() == ["v2"]
    assert dst.get_manifest("v2").digest == m.digest


def test_store_path_and_foreign_folders(tmp_path: Path) -> None:
    assert default_store_path({"MODELPACK_STORE": "/x/store"}) == Path("/x/store")
    assert default_store_path({"XDG_DATA_HOME": "/data"}) == Path("/data/modelpack/store")
    assert default_store_path({}) == Path.home() / ".local/share/modelpack/store"
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an OCI layout"):
        LayoutStore(tmp_path).put_blob_bytes(b"x")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
