"""Chunked uploads torn mid-way by a fault-injecting TCP proxy on 127.0.0.1, against the real registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.registry_helpers import blob, client_for, opener, random_bytes
from support.tearing_proxy import TearingProxy

from modelpack.registry import RegistryRepository, UploadOptions


@pytest.fixture
def make_proxy(registry) -> Iterator:
    proxies: list[TearingProxy] = []

    def make(cut_after: int, buffered: bool) -> TearingProxy:
        proxies.append(TearingProxy(registry.port, cut_after, buffered))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


SIZE = 1_200_000
CHUNK = 256 * 1024
OPTIONS = UploadOptions(monolithic_max=64 * 1024, chunk_size=CHUNK)


def _counting_opener(data: bytes, reads: list[int]):  # type: ignore[no-untyped-def]
    inner = opener(data)

    def open_at(offset: int) -> Iterator[bytes]:
        for piece in inner(offset):
            reads.append(len(piece))
            yield piece

    return open_at


def test_torn_chunk_resumes_from_the_registry_range(registry, repo, make_proxy) -> None:
    proxy = make_proxy(cut_after=2 * CHUNK + 100_000, buffered=True)
    data = random_bytes(SIZE)
    desc = blob(data)
    reads: list[int] = []
    with client_for(proxy.host) as client:
        r = RegistryRepository(client, repo, upload=OPTIONS)
        result = r.push_blob(desc, _counting_opener(data, reads))
    assert proxy.cuts == 1
    resent = sum(reads) - SIZE
    assert 0 < resent < SIZE, resent
    assert result.bytes_sent == sum(reads)
    with client_for(registry.host) as direct, RegistryRepository(direct, repo).read_blob(desc) as chunks:
        assert b"".join(chunks) == data


def test_session_dropped_by_registry_restarts_and_completes(registry, repo, make_proxy) -> None:
    # distribution 2.8 invalidates an upload whose PATCH broke after part of its body was stored
    # ("upload resumed at wrong offset"): the client must notice and start a new session.
    proxy = make_proxy(cut_after=2 * CHUNK + 100_000, buffered=False)
    data = random_bytes(SIZE)
    desc = blob(data)
    with client_for(proxy.host) as client:
        r = RegistryRepository(client, repo, upload=OPTIONS)
        result = r.push_blob(desc, opener(data))
        assert result.how == "upload"
        assert r.has_blob(desc.digest)
    assert proxy.cuts == 1
    with client_for(registry.host) as direct, RegistryRepository(direct, repo).read_blob(desc) as chunks:
        assert b"".join(chunks) == data
