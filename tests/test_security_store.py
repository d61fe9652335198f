"""The store and the history hold against hostile content and concurrent writers: a forged referrers index,
gc racing a build, a damaged root, a full disk, a store path that points at someone else's folder."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import script
from support.places import attach_report, make_release, runtime
from support.registry_helpers import client_for

from modelpack.environment.history import anchor
from modelpack.environment.place import Place
from modelpack.environment.promote import promote
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, parse
from modelpack.oci.target import RawManifest
from modelpack.registry.client import RegistryRepository
from modelpack.registry.referrers import fallback_tag

_EV = "dev.modelpack.event."
_MEMORY_LIMIT = 2 * 1024**3  # a runaway loop hits this long before it hurts the machine


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))


def run_bounded(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The console script with an address-space cap and a deadline: old code looped here forever."""
    env = {k: v for k, v in os.environ.items() if k != "MODELPACK_VERBOSE"}
    env.update({"DOCKER_CONFIG": os.devnull, "MODELPACK_ACTOR": "ci-bot", "MALLOC_ARENA_MAX": "2"})
    return subprocess.run(
        [str(script()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        preexec_fn=_limited,
    )


# -- item 3: history, rollback and promote terminate and tell the payload's truth --------------------------


def _forge(target: RegistryRepository, env: str, evil: str) -> Sequence[str]:
    """Rewrite the fallback referrers index of `env`'s anchor as anyone with push rights can: every entry's
    `who` and `to_digest` changed, and the newest event listed twice, once naming itself as previous."""
    tag = fallback_tag(anchor(env).digest)
    index = parse(target.get_manifest(tag).raw)
    assert isinstance(index, Index) and len(index.manifests) == 2
    lies = {_EV + "who": "mallory", _EV + "to_digest": evil}
    first, second = (replace(d, annotations={**d.annotations, **lies}) for d in index.manifests)
    looping = replace(second, annotations={**second.annotations, _EV + "previous_event": second.digest})
    forged = Index(manifests=(first, second, looping, second))
    raw = canonical.dumps(forged.to_json())
    target.put_manifest(tag, RawManifest(raw, mt.OCI_INDEX, digests.of_bytes(raw)))
    return [d.digest for d in index.manifests]


def test_a_forged_fallback_index_neither_loops_nor_lies(registry: RegistryProcess, repo: str) -> None:
    with client_for(registry.host) as client:
        target = RegistryRepository(client, repo)
        place = Place(target, None, f"{registry.host}/{repo}")
        releases = {v: make_release(target, v, v) for v in ("1.0.0", "1.1.0", "6.6.6")}
        for v in ("1.0.0", "1.1.0"):
            attach_report(target, releases[v])
            promote(place, v, "prod", runtime=runtime())
        events = _forge(target, "prod", evil=releases["6.6.6"].digest)
    ref = f"{registry.host}/{repo}"

    shown = run_bounded("history", ref, "prod", "--json")
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)["events"]
    assert [e["eventDigest"] for e in listed] == events[::-1]  # each once, newest first
    assert [e["toDigest"] for e in listed] == [releases["1.1.0"].digest, releases["1.0.0"].digest]
    assert {e["who"] for e in listed} == {"alice@laptop"}  # the payload's, not the index's "mallory"
    assert all(e["status"] == "in effect" for e in listed)

    rolled = run_bounded("rollback", ref, "prod", "--reason", "incident", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["toDigest"] == releases["1.0.0"].digest  # not the forged 6.6.6
    with client_for(registry.host) as client:
        assert RegistryRepository(client, repo).get_manifest("prod").digest == releases["1.0.0"].digest


# -- the local store: gc racing a build, a damaged root, a full disk, a foreign folder ----------------------


def _project(tmp: Path, weights_mb: int = 0) -> Path:
    from support.release_fixtures import EXAMPLES

    proj = tmp / "proj"
    shutil.copytree(EXAMPLES / "iris-onnx", proj)
    if weights_mb:
        with open(proj / "model.onnx", "ab") as f:  # padding after the protobuf: still a valid ONNX file
            f.write(b"\0" * (weights_mb << 20))
    return proj


def test_gc_never_deletes_what_a_running_build_writes(tmp_path: Path) -> None:
    """A build of a 64 MiB weights layer in its own process while this one runs gc --grace 0 in a loop:
    gc refuses while the build holds the writer lock, and the release is complete afterwards."""
    from modelpack.errors import StoreError
    from modelpack.store.layout import LayoutStore

    store_dir = tmp_path / "store"
    proj = _project(tmp_path, weights_mb=64)
    store = LayoutStore(store_dir)
    store.ensure()
    env = {**os.environ, "MODELPACK_STORE": str(store_dir), "SOURCE_DATE_EPOCH": "1700000000"}
    build = subprocess.Popen(
        [str(script()), "build", str(proj), "--no-image"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    refused = ran = 0
    deadline = time.monotonic() + 120
    while build.poll() is None and time.monotonic() < deadline:
        try:
            store.gc(grace_seconds=0)
            ran += 1
        except StoreError as e:
            assert "busy" in e.message
            refused += 1
        time.sleep(0.01)
    out, err = build.communicate(timeout=60)
    assert build.returncode == 0, err.decode()
    assert refused > 0  # the two overlapped: gc was asked while the build was writing
    digest = out.decode().strip()
    root = parse(store.read_blob_bytes(digest))
    for d in [root.config, *root.layers]:  # type: ignore[union-attr]
        assert store.has_blob(d.digest), d
    assert store.gc(grace_seconds=0).removed_blobs == 0  # nothing left half-written either


def test_gc_with_a_damaged_tagged_manifest_refuses_and_deletes_nothing(tmp_path: Path) -> None:
    from support.clirun import run_main

    from modelpack.store.layout import LayoutStore

    env = {"MODELPACK_STORE": str(tmp_path / "store"), "SOURCE_DATE_EPOCH": "1700000000"}
    built = run_main("build", str(_project(tmp_path)), "--no-image", env=env)
    assert built.returncode == 0, built.stderr
    store = LayoutStore(tmp_path / "store")
    blob = store.blob_path(built.stdout.strip())
    with open(blob, "ab") as f:
        f.write(b" ")  # one extra byte: the tagged root no longer hashes to its name
    before = sorted(p.name for p in (tmp_path / "store" / "blobs" / "sha256").iterdir())
    done = run_main("gc", "--grace", "0", env=env)
    assert done.returncode == 1 and "iris-onnx:1.0.0" in done.stderr and "nothing was deleted" in done.stderr
    assert sorted(p.name for p in (tmp_path / "store" / "blobs" / "sha256").iterdir()) == before


def test_a_full_disk_is_one_line_and_leaves_no_half_written_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC as a filesystem reports it at fsync, injected there (no real disk is filled)."""
    from support.clirun import run_main

    real = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 2:  # let the store's own files be made, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    env = {"MODELPACK_STORE": str(tmp_path / "store"), "SOURCE_DATE_EPOCH": "1700000000"}
    done = run_main("build", str(_project(tmp_path)), "--no-image", env=env)
    monkeypatch.undo()
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "no space left on device" in done.stderr, done.stderr
    tmp_dir = tmp_path / "store" / "blobs" / ".tmp"
    assert not tmp_dir.exists() or not any(tmp_dir.iterdir())
    assert "iris-onnx" not in run_main("list", env=env).stdout


def test_a_store_path_at_a_foreign_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from support.clirun import run_main

    foreign = tmp_path / "my-documents"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    done = run_main("build", str(_project(tmp_path)), "--no-image", env={"MODELPACK_STORE": str(foreign)})
    assert done.returncode == 1 and "not an OCI layout" in done.stderr, done.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]  # no blobs/, no cache/
