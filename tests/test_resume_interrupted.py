"""An interrupted pull resumes where it stopped, counted in bytes on the wire (issue 26 item 3): the
first copy is stopped half-way (as Ctrl-C stops it), the second one fetches only the rest through a TCP
proxy that counts what the registry sends, and the blob lands verified under its digest."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import pytest
from support.registry_helpers import client_for, push_artifact, random_bytes

from modelpack.errors import DigestMismatchError
from modelpack.oci import digest as digests
from modelpack.oci.copy import copy_graph
from modelpack.oci.target import Progress
from modelpack.registry import RegistryRepository
from modelpack.registry.ranged import RangeOptions
from modelpack.store.layout import LayoutStore

SIZE = 8 << 20


class CountingProxy:
    """127.0.0.1:port -> the registry; `down` counts the bytes the registry sent back."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.down = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(conn, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, conn, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    with self._lock:
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


class Stop(Exception):
    """What Ctrl-C is to the copy: an exception from inside its progress callback."""


def _stop_at(half: int):  # type: ignore[no-untyped-def]
    def progress(p: Progress) -> None:
        if p.total == SIZE and p.done >= half:
            raise Stop

    return progress


@pytest.fixture
def pushed(registry, tmp_path: Path):  # type: ignore[no-untyped-def]
    data = random_bytes(SIZE)
    repo = RegistryRepository(client_for(registry.host), f"resume/{tmp_path.name.lower()}")
    push_artifact(repo, "v1", [data])
    return repo.name, data


def _repo(proxy: CountingProxy, name: str) -> RegistryRepository:
    # one stream (no parallel ranges), so the proxy's count is the blob's bytes plus headers
    return RegistryRepository(client_for(proxy.host), name, ranges=RangeOptions(min_size=1 << 40))


def test_an_interrupted_pull_fetches_only_the_rest(registry, pushed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, data = pushed
    store = LayoutStore(tmp_path / "store")
    first = CountingProxy(registry.port)
    with pytest.raises(Stop):
        copy_graph(_repo(first, name), store, "v1", progress=_stop_at(SIZE // 2))
    first.close()
    partials = list((tmp_path / "store" / "blobs" / ".tmp").glob("partial-*"))
    assert len(partials) == 1 and partials[0].stat().st_size >= SIZE // 2
    held = partials[0].stat().st_size
    assert not store.has_blob(digests.of_bytes(data))

    second = CountingProxy(registry.port)
    copy_graph(_repo(second, name), store, "v1")
    second.close()
    assert store.read_blob_bytes(digests.of_bytes(data)) == data
    assert SIZE - held <= second.down < SIZE - held + (64 << 10)  # the rest, plus headers and manifests
    assert not list((tmp_path / "store" / "blobs" / ".tmp").glob("partial-*"))


def test_a_partial_with_wrong_bytes_is_discarded_not_kept(registry, pushed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, data = pushed
    store = LayoutStore(tmp_path / "store")
    first = CountingProxy(registry.port)
    with pytest.raises(Stop):
        copy_graph(_repo(first, name), store, "v1", progress=_stop_at(SIZE // 2))
    first.close()
    (partial,) = (tmp_path / "store" / "blobs" / ".tmp").glob("partial-*")
    with open(partial, "r+b") as f:  # a torn tail, as a machine crash may leave
        f.seek(100)
        f.write(b"\0" * 16)
    second = CountingProxy(registry.port)
    with pytest.raises(DigestMismatchError):
        copy_graph(_repo(second, name), store, "v1")
    second.close()
    assert not partial.exists() and not store.has_blob(digests.of_bytes(data))
    copy_graph(_repo(CountingProxy(registry.port), name), store, "v1")  # the next pull starts afresh
    assert store.read_blob_bytes(digests.of_bytes(data)) == data
