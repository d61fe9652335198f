"""Helpers shared by the registry tests: content builders and a request counter."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from modelpack.oci import digest as digests
from modelpack.oci import mediatypes
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.target import RawManifest
from modelpack.registry import RegistryClient, RegistryRepository


@dataclass
class Requests:
    """An httpx event hook recording (method, path) of every request a client sends."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> None:
        self.seen.append((request.method, request.url.path))

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for m, p in self.seen if m == method and contains in p)


def client_for(host: str, **kw: object) -> RegistryClient:
    kw.setdefault("credentials", lambda _: None)
    return RegistryClient(host, **kw)  # type: ignore[arg-type]


def blob(data: bytes, media_type: str = mediatypes.OCI_LAYER_TAR) -> Descriptor:
    return Descriptor(media_type, digests.of_bytes(data), len(data))


def opener(data: bytes, piece: int = 64 * 1024) -> Callable[[int], Iterator[bytes]]:
    def open_at(offset: int) -> Iterator[bytes]:
        for i in range(offset, len(data), piece):
            yield data[i : i + piece]

    return open_at


def push_artifact(
    repo: RegistryRepository, tag: str, layers: list[bytes], **manifest_kw: object
) -> RawManifest:
    config_bytes = b'{"model":"test"}'
    config = blob(config_bytes, mediatypes.OCI_CONFIG)
    repo.push_blob(config, opener(config_bytes))
    descs = []
    for data in layers:
        d = blob(data)
        repo.push_blob(d, opener(data))
        descs.append(d)
    manifest = Manifest(config=config, layers=tuple(descs), **manifest_kw)  # type: ignore[arg-type]
    raw = manifest.to_bytes()
    rm = RawManifest(raw, mediatypes.OCI_MANIFEST, digests.of_bytes(raw))
    repo.put_manifest(tag, rm)
    return rm


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
