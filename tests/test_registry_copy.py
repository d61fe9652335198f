"""Blob copies into a registry from each kind of source, and pulls that survive a torn connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.registry_helpers import blob, client_for, opener, random_bytes

from modelpack.errors import DigestMismatchError
from modelpack.oci import mediatypes
from modelpack.oci.target import Progress
from modelpack.registry import RegistryClient, RegistryRepository, UploadOptions
from modelpack.store.layout import LayoutStore


def test_mount_blob_between_repositories_and_202_fallback(registry, repo) -> None:
    data = random_bytes(40_000)
    desc = blob(data)
    with client_for(registry.host) as client:
        src = RegistryRepository(client, repo)
        dst = RegistryRepository(client, repo + "-dst")
        empty = RegistryRepository(client, repo + "-empty")
        src.push_blob(desc, opener(data))
        assert dst.mount_blob(desc, src) is True
        assert dst.has_blob(desc.digest)
        # The source lacks the blob: the registry answers 202 (a plain upload session), so no mount.
        other = blob(b"not anywhere")
        assert dst.mount_blob(other, empty) is False
        assert dst.mount_blob(desc, dst) is False
        # A mount given to push_blob whose source lacks the blob continues with the 202 session.
        result = dst.push_blob(other, opener(b"not anywhere"), mount_from=empty.name)
        assert result.how == "upload" and dst.has_blob(other.digest)


def test_copy_blob_from_layout_registry_and_same_registry(registry, repo, tmp_path: Path) -> None:
    data = random_bytes(600_000)
    layout = LayoutStore(tmp_path / "layout")
    desc = layout.put_blob_bytes(data, mediatypes.OCI_LAYER_TAR)
    events: list[Progress] = []
    options = UploadOptions(monolithic_max=100_000, chunk_size=200_000)
    with client_for(registry.host) as client, client_for(registry.host) as other_client:
        first = RegistryRepository(client, repo, upload=options)
        assert first.copy_blob_from([layout], desc, events.append).how == "upload"
        # a different client object for the same registry still mounts
        second = RegistryRepository(other_client, repo + "-b")
        assert second.copy_blob_from([first], desc, events.append).how == "mount"
        assert events[-1] == Progress(desc.digest, desc.size, desc.size, "mount")
        # from a registry repository under another name (here: a client on "localhost") it streams via Range
        with RegistryClient(f"localhost:{registry.port}", credentials=lambda _: None) as third_client:
            third = RegistryRepository(third_client, repo + "-c", upload=options)
            assert third.copy_blob_from([first], desc).how == "upload"
            with third.read_blob(desc) as chunks:
                assert b"".join(chunks) == data


def test_registry_refuses_bytes_that_do_not_hash_to_the_digest(registry, repo) -> None:
    claimed = blob(b"A" * 1000)
    with client_for(registry.host) as client:
        r = RegistryRepository(client, repo)
        with pytest.raises(DigestMismatchError, match="do not hash to it"):
            r.push_blob(claimed, opener(b"B" * 1000))
        assert not r.has_blob(claimed.digest)


class _TornOnce(httpx.SyncByteStream):
    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.cut]
        raise httpx.ReadError("connection reset by peer")


def test_torn_pull_resumes_with_range(tmp_path: Path) -> None:
    data = random_bytes(300_000)
    desc = blob(data)
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("range"))
        if len(ranges) == 1:
            return httpx.Response(200, stream=_TornOnce(data, 100_000))
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        return httpx.Response(
            206, content=data[start:], headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        )

    client = RegistryClient("r.test", credentials=lambda _: None, transport=httpx.MockTransport(handler))
    RegistryRepository(client, "a").download_blob(desc, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert ranges == [None, "bytes=100000-"]


def test_pull_from_registry_ignoring_range_drops_the_repeated_prefix() -> None:
    data = random_bytes(50_000)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(200, stream=_TornOnce(data, 20_000))
        return httpx.Response(200, content=data)  # ignores Range: the first 20 000 bytes come again

    client = RegistryClient("r.test", credentials=lambda _: None, transport=httpx.MockTransport(handler))
    with RegistryRepository(client, "a").read_blob(blob(data)) as chunks:
        assert b"".join(chunks) == data


def test_one_shot_source_rereads_within_its_window() -> None:
    import random

    from modelpack.errors import RegistryError
    from modelpack.registry.upload_source import OneShotSource

    rng = random.Random(7)
    data = rng.randbytes(400_000)
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, 30_000)
        pieces.append(data[i : i + n])
        i += n
    source = OneShotSource(iter(pieces), keep=60_000)

    def take(offset: int, n: int) -> bytes:
        out = b""
        for piece in source.open_at(offset):
            out += piece
            if len(out) >= n:
                break
        return out[:n]

    for pos in range(0, len(data), 50_000):
        n = min(50_000, len(data) - pos)
        assert take(pos, n) == data[pos : pos + n]
        back = pos + rng.randint(0, n - 1)  # a resume from inside the chunk just sent
        assert take(back, pos + n - back) == data[back : pos + n]
    with pytest.raises(RegistryError, match="cannot resend from byte 0"):
        source.open_at(0)
