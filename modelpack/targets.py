"""From what a user typed to the Target it names: a registry repository, an OCI layout, or the local store.

Resolution order for a reference without an explicit registry host (e.g. `iris:1.0.0`): a tag of that name
in the local store wins (it is what `modelpack build` printed); otherwise it is a Docker Hub short name, as
docker reads it. `oci:PATH[:TAG]` always names a layout directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelpack.oci.layout import LayoutStore, default_store_path
from modelpack.oci.target import Target
from modelpack.registry.client import RegistryRepository
from modelpack.registry.reference import Reference, parse_reference
from modelpack.registry.transport import RegistryClient


@dataclass(frozen=True)
class TlsOptions:
    ca_file: str | None = None
    insecure: bool = False  # skip certificate verification
    plain_http: bool | None = None  # None: plain HTTP for loopback registries only (as docker)


@dataclass(frozen=True)
class Resolved:
    target: Target
    ref: str | None  # tag or digest inside the target; None when the reference named only a repository
    display: str  # for messages: the reference as the user will recognise it
    reference: Reference | None = None  # None for the local store

    @property
    def is_local(self) -> bool:
        return isinstance(self.target, LayoutStore)


class Targets:
    """Opens targets and owns their registry clients (one connection pool per registry); close when done."""

    def __init__(
        self,
        tls: TlsOptions = TlsOptions(),
        store_path: Path | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.tls = tls
        self.store_path = store_path or default_store_path(environ)
        self._clients: dict[str, RegistryClient] = {}
        self._store: LayoutStore | None = None

    def __enter__(self) -> Targets:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    @property
    def store(self) -> LayoutStore:
        if self._store is None:
            self._store = LayoutStore(self.store_path)
        return self._store

    def client(self, registry: str) -> RegistryClient:
        if registry not in self._clients:
            self._clients[registry] = RegistryClient(
                registry, ca_file=self.tls.ca_file, insecure=self.tls.insecure, plain_http=self.tls.plain_http
            )
        return self._clients[registry]

    def repository(self, ref: Reference) -> RegistryRepository:
        return RegistryRepository(self.client(ref.registry), ref.repository)

    def open(self, text: str, *, local: bool = True) -> Resolved:
        """Resolve `text`. With `local`, a bare `name:tag` found in the local store means that."""
        if local and _may_be_local(text) and self.store_path.exists() and text in self.store.list_tags():
            return Resolved(self.store, text, text)
        ref = parse_reference(text)
        if ref.is_layout:
            assert ref.layout_path is not None
            return Resolved(LayoutStore(Path(ref.layout_path)), ref.digest or ref.tag, str(ref), ref)
        return Resolved(self.repository(ref), ref.digest or ref.tag, str(ref), ref)


def _may_be_local(text: str) -> bool:
    first = text.split("/", 1)[0]
    has_host = "/" in text and ("." in first or ":" in first or first == "localhost")
    return not text.startswith("oci:") and not has_host and "@" not in text
