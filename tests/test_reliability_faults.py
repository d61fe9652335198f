"""Faults, for real: the registry SIGKILLed mid-push, a build interrupted by SIGINT, concurrent builds and
pushes of one release, and a registry that keeps answering 429/503."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.registry_helpers import client_for
from support.scripted import Scripted, scripted_server

from modelpack import api
from modelpack.errors import NotFoundError, RegistryError
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.copy import CopyResult, copy_graph
from modelpack.oci.model import Descriptor, Index, Manifest, index_of, parse
from modelpack.oci.target import RawManifest
from modelpack.registry import RegistryClient, RegistryRepository, RetryPolicy
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {"SOURCE_DATE_EPOCH": "1700000000"}
BIG = 256 * 1024 * 1024
MiB = 1024 * 1024
MODELPACK = str(Path(sys.executable).parent / "modelpack")


def _random_blob(store: LayoutStore, size: int) -> Descriptor:
    """A random-looking layer written through the store API in 1 MiB pieces (never held in memory):
    one random MiB, each copy stamped with its index so no two pieces are equal (os.urandom runs at
    ~50 MB/s on a CI runner, too slow for 256 MiB)."""
    seed = os.urandom(MiB)

    def chunks() -> Iterator[bytes]:
        for i in range(size // MiB):
            yield i.to_bytes(8, "big") + seed[8:]

    h = hashlib.sha256()
    for piece in chunks():
        h.update(piece)
    desc = Descriptor(mt.OCI_LAYER_TAR, f"sha256:{h.hexdigest()}", size)
    store.write_blob(desc, chunks())
    return desc


@pytest.fixture(scope="module")
def big_release(tmp_path_factory: pytest.TempPathFactory) -> LayoutStore:
    """A layout holding index -> manifest -> (config, 256 MiB random layer), tagged v1."""
    root = tmp_path_factory.mktemp("big-release")
    store = LayoutStore(root / "store")
    layer = _random_blob(store, BIG)
    config = store.put_blob_bytes(b'{"kind":"fault-test"}', mt.OCI_CONFIG)
    manifest = store.put_document(Manifest(config=config, layers=(layer,)))
    store.put_document(index_of([manifest]), tag="v1")
    return store


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry of this test's own: killing it disturbs no other test."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    proc = RegistryProcess(root=tmp_path / "registry", binary=binary)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _upload_bytes(registry: RegistryProcess) -> int:
    return sum(p.stat().st_size for p in registry.storage.rglob("_uploads/*/data") if p.is_file())


def _graph(store: LayoutStore, tag: str) -> list[Descriptor]:
    """The blobs of every manifest under the index at `tag`."""
    index = parse(store.get_manifest(tag).raw)
    assert isinstance(index, Index)
    out: list[Descriptor] = []
    for m in index.manifests:
        child = parse(store.get_manifest(m.digest).raw)
        assert isinstance(child, Manifest)
        out += [child.config, *child.layers]
    return out


@pytest.mark.slow
def test_registry_killed_mid_push_then_rerun_resends_only_the_torn_blob(
    own_registry: RegistryProcess, big_release: LayoutStore
) -> None:
    repo = "t/killed-mid-push"
    blobs = _graph(big_release, "v1")
    failure: list[BaseException] = []
    # The first run gives up fast once the registry is gone, so the second run is a separate push.
    quick = RetryPolicy(attempts=2, base_delay=0.05, max_total=2.0)

    def first_push() -> None:
        with client_for(own_registry.host, retry=quick) as client:
            try:
                copy_graph(big_release, RegistryRepository(client, repo), "v1")
            except BaseException as e:
                failure.append(e)

    pusher = threading.Thread(target=first_push)
    pusher.start()
    deadline = time.monotonic() + 60
    while _upload_bytes(own_registry) < 40 * MiB:
        assert time.monotonic() < deadline and pusher.is_alive(), "the upload never got going"
        time.sleep(0.01)
    torn_at = _upload_bytes(own_registry)
    own_registry.kill()
    pusher.join(60)
    assert not pusher.is_alive()
    assert failure and isinstance(failure[0], RegistryError), failure

    own_registry.start()  # same storage, same port
    with client_for(own_registry.host) as client:
        dest = RegistryRepository(client, repo)
        # Between the runs: no tag points at the torn graph (the index goes last, after every blob).
        with pytest.raises(NotFoundError):
            dest.get_manifest("v1")
        present = {d.digest for d in blobs if dest.has_blob(d.digest)}
        assert blobs[1].digest not in present  # the big layer was torn
        second: CopyResult = copy_graph(big_release, dest, "v1")
        # distribution 2.8 drops a torn upload session, so the torn blob restarts from byte 0 and
        # finished blobs are skipped: exactly the missing blobs' bytes are sent, once.
        missing = [d for d in blobs if d.digest not in present]
        assert second.blobs_skipped == len(blobs) - len(missing)
        assert second.blobs_copied == len(missing)
        assert second.bytes_copied == sum(d.size for d in missing)
        assert second.digest == big_release.resolve("v1").digest
        assert dest.resolve("v1").digest == second.digest
        assert all(dest.has_blob(d.digest) for d in blobs)
    print(f"\nkilled at {torn_at / MiB:.0f} MiB uploaded; re-run sent {second.bytes_copied / MiB:.0f} MiB")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _blob_files(root: Path) -> list[Path]:
    """The store's blobs: files under blobs/, and the entries of source-backed layers (store/sourced.py)."""
    return [p for top in ("blobs", "sourced") for p in (root / top / "sha256").glob("*") if p.is_file()]


@pytest.mark.slow
def test_sigint_during_build_leaves_a_consistent_store(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    store_root = tmp_path / "store"
    first = run_cli("build", str(proj), "--no-image", "--store", str(store_root), env=ENV)
    assert first.returncode == 0, first.stderr
    kept = set(_blob_files(store_root))
    # v2 adds two large weights files, one layer each, in name order: a.bin's layer completes (a blob no
    # tag names yet), then the build is interrupted while big.bin's is being hashed (layers this big are
    # source-backed: the store records a.bin's layer as an entry naming the file, and copies nothing)
    (proj / "a.bin").write_bytes(os.urandom(20 * MiB))
    with (proj / "big.bin").open("wb") as f:
        f.truncate(512 * MiB)
    text = (proj / "modelpack.yaml").read_text()
    (proj / "modelpack.yaml").write_text(
        text.replace("paths: [weights.json]", "paths: [weights.json, a.bin, big.bin]").replace(
            "0.1.0", "0.2.0"
        )
    )
    proc = subprocess.Popen(
        [MODELPACK, "build", str(proj), "--no-image", "--store", str(store_root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **ENV},
        # a job started in the background inherits SIGINT ignored (as CI runners may start pytest);
        # a user at a terminal has it at its default, which is what is tested here
        preexec_fn=_default_sigint,
    )  # fmt: skip
    tmp_dir = store_root / "blobs" / ".tmp"
    deadline = time.monotonic() + 60
    while not list((store_root / "sourced" / "sha256").glob("[0-9a-f]*")):  # a.bin's layer is done
        assert proc.poll() is None, "the build finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.decode().strip() == "error: interrupted"
    # no blob under a wrong digest: every blob in the store hashes to its name
    for blob in _blob_files(store_root):
        desc = Descriptor(mt.OCI_LAYER_TAR, f"sha256:{blob.name}", 0)
        assert digests.of_chunks(LayoutStore(store_root).read_blob_at(desc, 0))[0] == desc.digest, blob
    assert LayoutStore(store_root).tags() == ["house-prices:0.1.0"]
    leftovers = set(_blob_files(store_root)) - kept
    assert leftovers  # a.bin's layer: complete, valid, and named by no tag
    gc = run_cli("gc", "--store", str(store_root), "--grace", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    assert set(_blob_files(store_root)) == kept  # leftovers of v2 gone, v1 intact
    assert not list(tmp_dir.glob("*"))
    print(f"\ngc after SIGINT: {gc.stdout.strip()}")
    listed = run_cli("list", "--store", str(store_root))
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:2] == ["house-prices", "0.1.0"] for line in listed.stdout.splitlines())


def test_two_builds_of_one_release_at_once_agree(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "iris-onnx", proj)
    store = str(tmp_path / "store")
    args = [MODELPACK, "build", str(proj), "--no-image", "--store", store]
    env = {**os.environ, **ENV}
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outs]
    printed = {o.decode().strip().splitlines()[-1] for o, _ in outs}
    assert len(printed) == 1 and next(iter(printed)).startswith("sha256:")
    assert LayoutStore(store).resolve("iris-onnx:1.0.0").digest == next(iter(printed))


def test_two_pushes_of_one_release_at_once_agree(tmp_path: Path, registry, repo: str) -> None:  # type: ignore[no-untyped-def]
    store = LayoutStore(tmp_path / "store")
    built = api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ=ENV)
    for round_ in range(3):  # three fresh repositories: the race window is small, give it chances
        dest = f"{registry.host}/{repo}-{round_}"
        results: list[CopyResult | BaseException] = []

        def push(dest: str = dest, results: list[CopyResult | BaseException] = results) -> None:
            try:
                with Targets(store_path=store.root) as targets:
                    results.append(api.push(targets, dest, source=built.tag).copy)
            except BaseException as e:
                results.append(e)

        threads = [threading.Thread(target=push) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(isinstance(r, CopyResult) for r in results) and len(results) == 2, results
        assert {r.digest for r in results if isinstance(r, CopyResult)} == {built.digest}
        with client_for(registry.host) as client:
            assert RegistryRepository(client, f"{repo}-{round_}").resolve("1.0.0").digest == built.digest


def test_429_and_503_are_retried_for_a_bounded_time_then_fail_clearly() -> None:
    script = Scripted(lambda n: (429 if n % 2 else 503, {"Retry-After": "1"}, b""))
    with scripted_server(script) as host:
        started = time.monotonic()
        result = run_cli("inspect", f"{host}/acme/iris:1.0.0")
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{host} answered HTTP" in result.stderr and "Traceback" not in result.stderr
    # five attempts, each after the server's Retry-After of 1 s: bounded, not forever
    assert script.count == 5, script.count
    assert 3.5 <= elapsed < 20, elapsed


def test_manifest_blob_unknown_during_a_concurrent_push_is_asked_again() -> None:
    # distribution 2.8 answers this while a concurrent push of the same blob rewrites its link
    unknown = httpx.Response(
        400, json={"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry"}]}
    )
    raw = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    digest = digests.of_bytes(raw)
    for answers, ok in (([unknown, unknown], True), ([unknown] * 9, False)):
        script = iter([*answers, httpx.Response(201, headers={"Docker-Content-Digest": digest})])
        sent: list[str] = []

        def handler(
            request: httpx.Request, script: Iterator[httpx.Response] = script, sent: list[str] = sent
        ) -> httpx.Response:
            sent.append(request.method)
            return next(script)

        sleeps: list[float] = []
        client = RegistryClient(
            "registry.test", credentials=lambda _: None, transport=httpx.MockTransport(handler),
            sleep=sleeps.append, jitter=lambda: 0.0,
        )  # fmt: skip
        repo = RegistryRepository(client, "a")
        if ok:
            assert repo.put_manifest("v1", RawManifest(raw, mt.OCI_INDEX, digest)) == digest
            assert sent == ["PUT"] * 3 and len(sleeps) == 2
        else:
            with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
                repo.put_manifest("v1", RawManifest(raw, mt.OCI_INDEX, digest))
            assert sent == ["PUT"] * 4  # bounded
