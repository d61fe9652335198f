"""An interrupted push resumes on the next run where the registry stopped, counted in bytes on the wire
(issue 26 item 3): the first push is stopped half-way (as Ctrl-C stops it) behind a proxy that forwards
only whole requests (as nginx does by default), the second one sends only the rest, and the registry
commits the blob under its digest. A session the registry no longer knows starts over cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.registry_helpers import blob, client_for, random_bytes
from support.tearing_proxy import TearingProxy

from modelpack.oci import digest as digests
from modelpack.oci import mediatypes
from modelpack.oci.copy import copy_graph
from modelpack.oci.model import Manifest
from modelpack.oci.target import Progress, RawManifest
from modelpack.registry import RegistryRepository, UploadOptions
from modelpack.store.layout import LayoutStore
from modelpack.store.uploads import UploadSessions

SIZE = 8 << 20
CHUNK = 2 << 20  # two 1 MiB reads of the store: the stop lands inside a PATCH body
OPTIONS = UploadOptions(monolithic_max=CHUNK, chunk_size=CHUNK)
NEVER = 1 << 40


class Stop(Exception):
    """What Ctrl-C is to the push: an exception from inside its progress callback."""


def _stop_mid_chunk(p: Progress) -> None:
    if p.total == SIZE and p.done >= SIZE // 2 + CHUNK // 2:
        raise Stop


@pytest.fixture
def release(tmp_path: Path) -> tuple[LayoutStore, bytes]:
    data = random_bytes(SIZE)
    source = LayoutStore(tmp_path / "source")
    config_bytes = b'{"model":"test"}'
    config = blob(config_bytes, mediatypes.OCI_CONFIG)
    source.write_blob(config, [config_bytes])
    source.write_blob(blob(data), [data])
    raw = Manifest(config=config, layers=(blob(data),)).to_bytes()
    source.put_manifest("v1", RawManifest(raw, mediatypes.OCI_MANIFEST, digests.of_bytes(raw)))
    return source, data


def _push(proxy: TearingProxy, repo: str, store: Path, source: LayoutStore, **kw: object) -> None:
    with client_for(proxy.host) as client:
        dest = RegistryRepository(client, repo, upload=OPTIONS, sessions=UploadSessions(store))
        copy_graph(source, dest, "v1", "v1", **kw)  # type: ignore[arg-type]


def _pushed_bytes(registry, repo: str, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    with client_for(registry.host) as direct:
        repository = RegistryRepository(direct, repo)
        with repository.read_blob(blob(data)) as chunks:
            return b"".join(chunks)


def test_an_interrupted_push_sends_only_the_rest(registry, repo, release, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, data = release
    store = tmp_path / "store"
    proxy = TearingProxy(registry.port, cut_after=NEVER, buffered=True)
    with pytest.raises(Stop):
        _push(proxy, repo, store, source, progress=_stop_mid_chunk)
    (record,) = (store / "uploads").glob("*.json")
    kept = json.loads(record.read_text())
    assert kept["offset"] == SIZE // 2 and kept["path"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert "://" not in record.read_text() and "@" not in kept["path"]  # no origin, no credentials

    proxy.received = 0  # the same proxy: a session belongs to the registry (host:port) it was opened on
    _push(proxy, repo, store, source)
    proxy.close()
    assert proxy.received < 0.6 * SIZE, proxy.received  # the rest, headers and the manifest
    assert proxy.received > SIZE // 2
    assert _pushed_bytes(registry, repo, data) == data
    assert not list((store / "uploads").glob("*.json"))


def test_a_session_the_registry_dropped_starts_over(registry, repo, release, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, data = release
    store = tmp_path / "store"
    proxy = TearingProxy(registry.port, cut_after=NEVER, buffered=True)
    with pytest.raises(Stop):
        _push(proxy, repo, store, source, progress=_stop_mid_chunk)
    (record,) = (store / "uploads").glob("*.json")
    with client_for(registry.host) as direct:  # the registry forgets the session (as its purge does)
        path = json.loads(record.read_text())["path"]
        gone = direct.send("DELETE", path, scopes=[])
        assert gone.status_code == 204

    proxy.received = 0
    _push(proxy, repo, store, source)
    proxy.close()
    assert proxy.received > SIZE  # sent whole again, from a new session
    assert _pushed_bytes(registry, repo, data) == data
    assert not list((store / "uploads").glob("*.json"))
