"""Source-backed weight layers: a cold build keeps no second copy of the weights, every digest is the one
a copying build gives, pushes and copies send real bytes, and a source changed since the build is refused
before a byte of it leaves the store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from support.clirun import run_main
from support.weights import MIB, TAG, rewrite_same_size, sha256_file, store_bytes, weights_project

from modelpack import api
from modelpack.bundle import layers
from modelpack.errors import StoreError
from modelpack.oci import digest, mediatypes
from modelpack.oci.filestat import FileStat
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.tar import TarEntry, layer_parts, tar_chunks, with_parents
from modelpack.store.layout import LayoutStore
from modelpack.store.sourced import FilePart, SourcedBlob, hash_parts
from modelpack.targets import Targets

ENV = {"SOURCE_DATE_EPOCH": "1700000000"}


def _bundle(store: LayoutStore, tag: str = TAG) -> Manifest:
    doc = parse(store.get_manifest(tag).raw)
    assert isinstance(doc, Manifest)
    return doc


def _weights_layer(store: LayoutStore, tag: str = TAG) -> Descriptor:
    return next(d for d in _bundle(store, tag).layers if d.media_type == mediatypes.MODEL_WEIGHT_TAR)


def _read(store: LayoutStore, desc: Descriptor) -> bytes:
    with store.read_blob(desc) as chunks:
        return b"".join(chunks)


def _env(store: Path) -> dict[str, str]:
    return {**ENV, "MODELPACK_STORE": str(store)}


def test_cold_build_keeps_no_copy_and_gives_the_digests_a_copying_build_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = weights_project(tmp_path / "proj", 64 * MIB)
    store = LayoutStore(tmp_path / "store")
    built = api.build(Targets(store_path=store.root), proj, environ=ENV)
    # under 1% of the weights on disk, caches included; no blob file anywhere near the weights' size
    assert store_bytes(store.root) < 0.01 * 64 * MIB
    assert max(p.stat().st_size for p in (store.root / "blobs" / "sha256").iterdir()) < MIB
    weights = _weights_layer(store)
    assert not store.blob_path(weights.digest).exists() and store.sourced_path(weights.digest).is_file()
    record_file = next(f for f in built.bundle.record.files if f.path == "models/weights.bin")
    assert record_file.sha256 == sha256_file(proj / "weights.bin") and record_file.size == 64 * MIB
    data = _read(store, weights)
    assert len(data) == weights.size and digest.of_bytes(data) == weights.digest
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        member = tf.extractfile("models/weights.bin")
        assert member is not None and member.read() == (proj / "weights.bin").read_bytes()

    # The same build, every layer copied into blobs/ as before: byte for byte the same release.
    monkeypatch.setattr(layers, "SOURCED_MIN", 1 << 62)
    copied = LayoutStore(tmp_path / "copied")
    again = api.build(Targets(store_path=copied.root), proj, environ=ENV)
    assert again.bundle.manifest.digest == built.bundle.manifest.digest
    assert copied.blob_path(weights.digest).read_bytes() == data
    assert not (copied.root / "sourced").exists()


def test_layer_parts_are_the_tar_stream_byte_for_byte(tmp_path: Path) -> None:
    big, small = tmp_path / "big.bin", tmp_path / "tool.sh"
    big.write_bytes(os.urandom(3 * MIB + 7))
    small.write_bytes(b"#!/bin/sh\n")
    small.chmod(0o755)
    entries = with_parents(
        [
            TarEntry.from_file(big, "models/" + "long-name-" * 12 + ".bin"),  # a pax header
            TarEntry.from_file(small, "models/bin/tool.sh"),
            TarEntry.from_bytes("models/cfg/é.json", b"{}"),
        ]
    )
    parts = [
        p if isinstance(p, bytes) else FilePart(p.source, p.stat)  # type: ignore[arg-type]
        for p in layer_parts(entries, 1_700_000_000)
    ]
    expected = b"".join(tar_chunks(entries, 1_700_000_000))
    blob = SourcedBlob(digest.of_bytes(expected), len(expected), tuple(parts))
    assert b"".join(blob.chunks()) == expected
    assert b"".join(blob.chunks(1000)) == expected[1000:]
    assert b"".join(blob.chunks(len(expected) - 3)) == expected[-3:]
    layer, size, files = hash_parts(parts)
    assert (layer, size) == (digest.of_bytes(expected), len(expected))
    assert files == [(sha256_file(p), p.stat().st_size) for p in (small, big)]  # stream order: by name
    assert SourcedBlob.from_bytes(blob.to_bytes(), blob.digest, "here") == blob


def test_push_and_pull_back_keep_every_digest(registry, repo, tmp_path: Path) -> None:
    proj = weights_project(tmp_path / "proj", 24 * MIB)
    built = run_main("build", str(proj), "--no-image", env=_env(tmp_path / "store"))
    assert built.returncode == 0, built.stderr
    store = LayoutStore(tmp_path / "store")
    weights = _weights_layer(store)
    ref = f"{registry.host}/{repo}:1.0.0"
    pushed = run_main("push", ref, "--from", TAG, env=_env(tmp_path / "store"))
    assert pushed.returncode == 0, pushed.stderr
    # the registry holds the real layer: the bytes hash to the descriptor (checked here, independently)
    got = httpx.get(f"http://{registry.host}/v2/{repo}/blobs/{weights.digest}", follow_redirects=True)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == weights.digest[7:]
    pulled = run_main("pull", ref, env=_env(tmp_path / "other"))
    assert pulled.returncode == 0, pulled.stderr
    other = LayoutStore(tmp_path / "other")
    assert other.resolve(ref).digest == store.resolve(TAG).digest
    assert digest.of_bytes(other.blob_path(weights.digest).read_bytes()) == weights.digest  # a real blob
    out = tmp_path / "unpacked"
    done = run_main("unpack", ref, str(out), env=_env(tmp_path / "other"))
    assert done.returncode == 0, done.stderr
    assert (out / "models" / "weights.bin").read_bytes() == (proj / "weights.bin").read_bytes()
    # skopeo, an independent client, reads the registry's manifest and blobs
    flags = ["--insecure-policy", "--src-tls-verify=false"]
    skopeo = subprocess.run(
        ["skopeo", "copy", *flags, f"docker://{ref}", f"dir:{tmp_path}/d"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert skopeo.returncode == 0, skopeo.stderr
    assert digest.of_bytes((tmp_path / "d" / weights.digest[7:]).read_bytes()) == weights.digest


@pytest.mark.parametrize("edit", ["same-size", "appended", "deleted"])
def test_weights_edited_after_build_are_refused_and_nothing_is_uploaded(
    registry, repo, tmp_path: Path, edit: str
) -> None:
    proj = weights_project(tmp_path / "proj", 20 * MIB)
    assert run_main("build", str(proj), "--no-image", env=_env(tmp_path / "store")).returncode == 0
    store = LayoutStore(tmp_path / "store")
    weights = _weights_layer(store)
    path = proj / "weights.bin"
    if edit == "same-size":
        rewrite_same_size(path)
    elif edit == "appended":
        with open(path, "ab") as f:
            f.write(b"\0")
    else:
        path.unlink()
    pushed = run_main("push", f"{registry.host}/{repo}:1.0.0", "--from", TAG, env=_env(tmp_path / "store"))
    assert pushed.returncode != 0
    lines = [line for line in pushed.stderr.splitlines() if line.strip()]
    assert str(path) in lines[0] and "rebuild with modelpack build" in pushed.stderr, pushed.stderr
    assert "Traceback" not in pushed.stderr
    head = httpx.head(f"http://{registry.host}/v2/{repo}/blobs/{weights.digest}")
    assert head.status_code == 404
    assert httpx.get(f"http://{registry.host}/v2/{repo}/manifests/1.0.0").status_code == 404
    with pytest.raises(StoreError, match="modelpack build"):
        list(store.read_blob_at(weights, 0))
    with pytest.raises(StoreError, match=r"weights\.bin"):
        store.has_blob(weights.digest)
    if edit == "deleted":
        return
    # the fix the message names: rebuild, then the push goes through with the new weights
    assert run_main("build", str(proj), "--no-image", env=_env(tmp_path / "store")).returncode == 0
    new = _weights_layer(store)
    assert new.digest != weights.digest
    dest = f"{registry.host}/{repo}:1.0.1"
    again = run_main("push", dest, "--from", TAG, "--any-version", env=_env(tmp_path / "store"))
    assert again.returncode == 0, again.stderr


def test_a_pull_brings_back_the_real_bytes_of_a_release_whose_source_changed(
    registry, repo, tmp_path: Path
) -> None:
    proj = weights_project(tmp_path / "proj", 20 * MIB)
    env = _env(tmp_path / "store")
    assert run_main("build", str(proj), "--no-image", env=env).returncode == 0
    ref = f"{registry.host}/{repo}:1.0.0"
    assert run_main("push", ref, "--from", TAG, env=env).returncode == 0
    store = LayoutStore(tmp_path / "store")
    weights = _weights_layer(store)
    rewrite_same_size(proj / "weights.bin")
    pulled = run_main("pull", ref, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert store.has_blob(weights.digest)  # a real blob now, not the stale entry
    assert digest.of_bytes(_read(store, weights)) == weights.digest
    again = run_main("push", f"{registry.host}/{repo}-mirror:1.0.0", "--from", TAG, env=env)
    assert again.returncode == 0, again.stderr


def test_a_file_changed_while_it_is_served_stops_the_read(tmp_path: Path) -> None:
    proj = weights_project(tmp_path / "proj", 20 * MIB)
    store = LayoutStore(tmp_path / "store")
    api.build(Targets(store_path=store.root), proj, environ=ENV)
    weights = _weights_layer(store)
    chunks = iter(store.read_blob_at(weights, 0))
    next(chunks)
    with open(proj / "weights.bin", "r+b") as f:  # written while the reader is half way
        f.write(b"changed")
    with pytest.raises(StoreError, match="changed since the build"):
        for _ in chunks:
            pass


def test_copy_to_a_layout_writes_real_blobs_that_skopeo_reads(tmp_path: Path) -> None:
    proj = weights_project(tmp_path / "proj", 20 * MIB)
    assert run_main("build", str(proj), "--no-image", env=_env(tmp_path / "store")).returncode == 0
    store = LayoutStore(tmp_path / "store")
    weights = _weights_layer(store)
    layout = tmp_path / "layout"
    done = run_main("copy", TAG, f"oci:{layout}:1.0.0", env=_env(tmp_path / "store"))
    assert done.returncode == 0, done.stderr
    assert not (layout / "sourced").exists()
    assert digest.of_bytes((layout / "blobs" / "sha256" / weights.digest[7:]).read_bytes()) == weights.digest
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{layout}:1.0.0"], capture_output=True, check=True, timeout=60
    ).stdout
    assert raw == store.get_manifest(TAG).raw
    out = tmp_path / "dir"
    subprocess.run(
        ["skopeo", "copy", "--insecure-policy", f"oci:{layout}:1.0.0", f"dir:{out}"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert digest.of_bytes((out / weights.digest[7:]).read_bytes()) == weights.digest
    # the copy out left the store as it was: still no copy of the weights there
    assert not store.blob_path(weights.digest).exists() and store.sourced_path(weights.digest).is_file()


def test_gc_keeps_live_source_backed_layers_and_drops_changed_or_unreachable_ones(tmp_path: Path) -> None:
    proj = weights_project(tmp_path / "proj", 20 * MIB)
    store = LayoutStore(tmp_path / "store")
    api.build(Targets(store_path=store.root), proj, environ=ENV)
    weights = _weights_layer(store)
    sidecar = store.sourced_path(weights.digest)
    assert store.gc(grace_seconds=0).stale_sources == 0 and sidecar.is_file()  # tagged, source unchanged
    assert store.has_blob(weights.digest)

    store.delete_tag(TAG)  # unreachable: kept while young, collected after the grace period
    young = store.gc(grace_seconds=3600)
    assert young.kept_young >= 1 and sidecar.is_file()
    old = store.gc(grace_seconds=0)
    assert not sidecar.exists() and old.removed_blobs >= 1 and old.stale_sources == 0
    assert not store.has_blob(weights.digest)

    api.build(
        Targets(store_path=store.root), proj, environ=ENV
    )  # tagged again, then its source changes: gc drops it all the same
    assert sidecar.is_file()
    with open(proj / "weights.bin", "ab") as f:
        f.write(b"x")
    stale = store.gc(grace_seconds=3600)
    assert stale.stale_sources == 1 and not sidecar.exists()
    assert not store.has_blob(weights.digest)
    (sidecar.parent / f".{sidecar.name}.123-abc").write_bytes(b"{")  # a torn entry write
    assert store.gc(grace_seconds=3600).removed_temp_files == 1

    moved = weights_project(tmp_path / "moved", 20 * MIB, seed=b"other")  # a project deleted after its build
    api.build(Targets(store_path=store.root), moved, environ=ENV)
    gone = store.sourced_path(_weights_layer(store).digest)
    (moved / "weights.bin").unlink()
    assert gone.is_file() and store.gc(grace_seconds=3600).stale_sources == 1 and not gone.exists()


def test_the_stat_cache_answers_a_warm_build_and_misses_a_touched_file(tmp_path: Path) -> None:
    proj = weights_project(tmp_path / "proj", 20 * MIB)
    store = LayoutStore(tmp_path / "store")
    for f in proj.iterdir():  # none racily recent (just written), so the stat cache keeps every layer
        os.utime(f, (1_700_000_000, 1_700_000_000))
    time.sleep(0.2)  # the ctime of that utime is recent too: let it age past the racy window
    first = api.build(Targets(store_path=store.root), proj, environ=ENV)
    warm = api.build(Targets(store_path=store.root), proj, environ=ENV)
    assert warm.bundle.reused_layers == len(first.bundle.layers) and warm.digest == first.digest
    sidecar = store.sourced_path(_weights_layer(store).digest)
    recorded = json.loads(sidecar.read_bytes())["parts"][1]["stat"]
    os.utime(proj / "weights.bin", (1_700_000_100, 1_700_000_100))  # same bytes, new identity
    touched = api.build(Targets(store_path=store.root), proj, environ=ENV)
    assert touched.bundle.reused_layers == len(first.bundle.layers) - 1 and touched.digest == first.digest
    assert json.loads(sidecar.read_bytes())["parts"][1]["stat"] == FileStat.of(proj / "weights.bin").key()
    assert recorded != FileStat.of(proj / "weights.bin").key()
    assert digest.of_bytes(_read(store, _weights_layer(store))) == _weights_layer(store).digest


def test_a_path_reader_gets_the_blob_copied_in_once(tmp_path: Path) -> None:
    """The Docker builder's context needs a file per layer: blob_file materialises a source-backed one."""
    proj = weights_project(tmp_path / "proj", 20 * MIB)
    store = LayoutStore(tmp_path / "store")
    api.build(Targets(store_path=store.root), proj, environ=ENV)
    weights = _weights_layer(store)
    path = store.blob_file(weights.digest)
    assert path == store.blob_path(weights.digest) and digest.of_bytes(path.read_bytes()) == weights.digest
    assert not store.sourced_path(weights.digest).exists()
    rewrite_same_size(proj / "weights.bin")  # the store now holds its own copy: the edit no longer matters
    assert digest.of_bytes(_read(store, weights)) == weights.digest
