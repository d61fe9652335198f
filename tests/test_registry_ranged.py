"""Parallel ranged pulls from a real registry: right bytes, digest checked, torn ranges resumed, and a
registry that ignores Range read as one stream. Only the faults a real registry never produces (a flipped
byte in one range, a range torn mid-body, Range ignored) come from a wrapping transport."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.registry_helpers import blob, client_for, push_artifact
from support.release_fixtures import Pushed, pushed  # noqa: F401  (pushed is the fixture)

from modelpack.errors import DigestMismatchError
from modelpack.oci.copy import copy_graph
from modelpack.oci.target import Progress
from modelpack.registry import RangeOptions, RegistryRepository
from modelpack.store.layout import LayoutStore
from modelpack.unpack import unpack

PIECE = 64 * 1024
# The probe is one piece; a probe is never fast enough for one stream (a loopback one would be).
SMALL = RangeOptions(min_size=2 * PIECE, piece=PIECE, workers=4, window=5, probe=PIECE, one_stream_rate=1e30)
SIZE = 20 * PIECE + 1234  # the probe and 20 pieces, the last one short

Fault = Callable[[httpx.Request, httpx.HTTPTransport], httpx.Response]


class Wrapped(httpx.BaseTransport):
    """The real transport, with one fault applied to the requests `fault` picks; records blob GETs."""

    def __init__(self, fault: Fault | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.fault = fault
        self.gets: list[tuple[str, int]] = []  # (Range header, status) of every blob GET

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.fault is not None and _is_blob_get(request):
            response = self.fault(request, self.inner)
        else:
            response = self.inner.handle_request(request)
        if _is_blob_get(request):
            self.gets.append((request.headers.get("range", ""), response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()


def _is_blob_get(request: httpx.Request) -> bool:
    return request.method == "GET" and "/blobs/sha256:" in request.url.path


def _range_from(request: httpx.Request) -> int | None:
    value = request.headers.get("range", "")
    return int(value.removeprefix("bytes=").split("-")[0]) if value else None


def corrupt_at(start: int) -> Fault:
    """Flip the first byte of the answer to the range that starts at `start`."""

    def fault(request: httpx.Request, inner: httpx.HTTPTransport) -> httpx.Response:
        response = inner.handle_request(request)
        if _range_from(request) != start:
            return response
        body = response.read()
        response.close()
        return httpx.Response(
            response.status_code, headers=response.headers, content=bytes([body[0] ^ 1]) + body[1:]
        )

    return fault


class _Torn(httpx.SyncByteStream):
    def __init__(self, inner: httpx.Response, cut: int) -> None:
        self.inner, self.cut = inner, cut

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner.iter_raw():
            if sent + len(chunk) >= self.cut:
                yield chunk[: self.cut - sent]
                raise httpx.ReadError("torn by the test")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


def tear_once_at(start: int, cut: int) -> Fault:
    """Break the first answer to the range starting at `start` after `cut` bytes of its body."""
    torn: list[int] = []

    def fault(request: httpx.Request, inner: httpx.HTTPTransport) -> httpx.Response:
        response = inner.handle_request(request)
        if _range_from(request) != start or torn:
            return response
        torn.append(start)
        return httpx.Response(response.status_code, headers=response.headers, stream=_Torn(response, cut))

    return fault


def ignore_ranges(request: httpx.Request, inner: httpx.HTTPTransport) -> httpx.Response:
    del request.headers["range"]
    return inner.handle_request(request)


def test_a_fast_first_range_brings_the_rest_in_one_stream(registry: RegistryProcess, repo: str) -> None:
    data, _ = _pushed_blob(registry, repo)
    wire = Wrapped()
    fast = RangeOptions(min_size=2 * PIECE, piece=PIECE, probe=PIECE, one_stream_rate=0.0)
    source = RegistryRepository(client_for(registry.host, transport=wire), repo, ranges=fast)
    with source.read_blob(blob(data)) as chunks:
        assert b"".join(chunks) == data
    assert wire.gets == [(f"bytes=0-{PIECE - 1}", 206), (f"bytes={PIECE}-", 206)]
    source.client.close()


def _pushed_blob(registry: RegistryProcess, repo: str) -> tuple[bytes, str]:
    data = os.urandom(SIZE)
    with client_for(registry.host) as client:
        push_artifact(RegistryRepository(client, repo), "big", [data])
    return data, blob(data).digest


def _repo(registry: RegistryProcess, repo: str, transport: Wrapped) -> RegistryRepository:
    return RegistryRepository(client_for(registry.host, transport=transport), repo, ranges=SMALL)


def test_large_blob_comes_in_parallel_ranges_verified(
    registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    data, _ = _pushed_blob(registry, repo)
    wire = Wrapped()
    source = _repo(registry, repo, wire)
    with source.read_blob(blob(data)) as chunks:
        assert b"".join(chunks) == data
    pieces = -(-SIZE // PIECE)
    assert sorted(wire.gets) == sorted(
        (f"bytes={i * PIECE}-{min(SIZE, (i + 1) * PIECE) - 1}", 206) for i in range(pieces)
    )
    store = LayoutStore(tmp_path / "store")
    copy_graph(source, store, "big")
    assert store.blob_path(blob(data).digest).read_bytes() == data
    source.client.close()


def test_a_corrupted_range_is_refused_and_nothing_is_stored(
    registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    _, digest = _pushed_blob(registry, repo)
    source = _repo(registry, repo, Wrapped(corrupt_at(7 * PIECE)))
    store = LayoutStore(tmp_path / "store")
    with pytest.raises(DigestMismatchError, match=digest):
        copy_graph(source, store, "big")
    assert not store.has_blob(digest)
    assert store.list_tags() == []
    blobs = tmp_path / "store" / "blobs"
    assert [p for p in blobs.rglob("*") if p.is_file() and "sha256" not in p.parts] == []  # no temp file
    source.client.close()


def test_a_torn_range_resumes_from_where_it_broke(registry: RegistryProcess, repo: str) -> None:
    data, _ = _pushed_blob(registry, repo)
    wire = Wrapped(tear_once_at(3 * PIECE, 1000))
    source = _repo(registry, repo, wire)
    with source.read_blob(blob(data)) as chunks:
        assert b"".join(chunks) == data
    resumed = [r for r, _ in wire.gets if r.startswith(f"bytes={3 * PIECE + 1000}-")]
    assert resumed == [f"bytes={3 * PIECE + 1000}-{4 * PIECE - 1}"]
    source.client.close()


def test_a_registry_without_ranges_is_read_as_one_stream(registry: RegistryProcess, repo: str) -> None:
    data, _ = _pushed_blob(registry, repo)
    wire = Wrapped(ignore_ranges)
    source = _repo(registry, repo, wire)
    with source.read_blob(blob(data)) as chunks:
        assert b"".join(chunks) == data
    assert [status for _, status in wire.gets] == [200]  # the probe's whole answer, nothing more
    source.client.close()


TINY = RangeOptions(min_size=1024, piece=512, workers=3, window=4, probe=512, one_stream_rate=1e30)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_streamed_unpack_from_ranges_gives_the_same_tree(
    registry: RegistryProcess, pushed: Pushed, tmp_path: Path  # noqa: F811
) -> None:
    """unpack of a registry ref reads each layer from the network straight into the staging folder."""
    store = LayoutStore(tmp_path / "store")
    wire = Wrapped()
    source = RegistryRepository(client_for(registry.host, transport=wire), pushed.repo, ranges=TINY)
    copy_graph(source, store, "1.1.0")
    unpack(store, "1.1.0", tmp_path / "from-store")
    wire.gets.clear()
    unpack(source, "1.1.0", tmp_path / "from-registry")
    assert any(status == 206 for _, status in wire.gets)
    assert _tree(tmp_path / "from-registry") == _tree(tmp_path / "from-store") != {}
    source.client.close()


def test_streamed_unpack_with_a_corrupted_range_leaves_no_folder(
    registry: RegistryProcess, pushed: Pushed, tmp_path: Path  # noqa: F811
) -> None:
    # The second piece of every ranged layer is damaged: the tar still parses, the digest does not match.
    source = RegistryRepository(
        client_for(registry.host, transport=Wrapped(corrupt_at(512))), pushed.repo, ranges=TINY
    )
    dest = tmp_path / "out"
    with pytest.raises(DigestMismatchError):
        unpack(source, "1.1.0", dest)
    assert not dest.exists()
    source.client.close()


def test_blobs_ranged_at_once_share_one_memory_budget_without_deadlock(
    registry: RegistryProcess, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four blobs in parallel ranges at once with one shared slot: each still gets its head piece, so all
    complete verified, and the slot is given back (issue 26 item 3)."""
    import threading

    from modelpack.registry import ranged

    budget = threading.BoundedSemaphore(1)
    monkeypatch.setattr(ranged, "_shared", budget)
    datas = [os.urandom(SIZE) for _ in range(4)]
    with client_for(registry.host) as client:
        push_artifact(RegistryRepository(client, repo), "four", datas)
    source = _repo(registry, repo, Wrapped())
    store = LayoutStore(tmp_path / "store")
    copy_graph(source, store, "four", concurrency=4)
    assert [store.blob_path(blob(d).digest).read_bytes() == d for d in datas] == [True] * 4
    assert budget.acquire(blocking=False)  # the one slot is free again
    budget.release()
    source.client.close()


class Stop(Exception):
    """What Ctrl-C is to the pull: an exception from inside its progress callback."""


def test_an_interrupted_ranged_pull_keeps_a_verified_prefix_and_resumes_from_it(
    registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    """Ranges land at their offsets as they arrive (os.pwrite); stopped half-way, the partial is cut to
    the hashed contiguous prefix (no holes to read as zeros), and the next pull asks only for the rest."""
    data, digest = _pushed_blob(registry, repo)
    store = LayoutStore(tmp_path / "store")

    def stop(p: Progress) -> None:
        if p.total == SIZE and p.done >= SIZE // 2:
            raise Stop

    source = _repo(registry, repo, Wrapped())
    with pytest.raises(Stop):
        copy_graph(source, store, "big", progress=stop)
    source.client.close()
    (partial,) = (tmp_path / "store" / "blobs" / ".tmp").glob("partial-*")
    held = partial.read_bytes()
    assert SIZE // 2 <= len(held) < SIZE and data.startswith(held)
    wire = Wrapped()
    source = _repo(registry, repo, wire)
    copy_graph(source, store, "big")
    assert store.blob_path(digest).read_bytes() == data
    starts = [int(r.removeprefix("bytes=").split("-")[0]) for r, _ in wire.gets if r]
    assert starts and min(starts) == len(held)  # nothing before the kept prefix asked for again
    source.client.close()
