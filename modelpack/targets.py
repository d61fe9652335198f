"""From what a user typed to where it lives: one rule, used by every command.

    oci:PATH[:TAG|@DIGEST]          an OCI image layout directory
    HOST/REPO[:TAG|@DIGEST]         a registry: the first component is a host (has a '.' or a ':', or is
                                    `localhost`), as docker decides
    NAME[:TAG|@DIGEST]              a repository of the local store (what `modelpack build` and
                                    `modelpack list` show); never a Docker Hub short name. Absent, it is
                                    an error naming the store, not a lookup anywhere else.

With `local=True` (the `--local` flag) a registry name means the store's copy of it: a pulled release is
stored under its full name (`127.0.0.1:5000/acme/iris:1.0.0`), so it stays usable with no network.
Base images are the one exception: `python:3.11-slim` is Docker Hub, as docker reads it (`open_base`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from modelpack.errors import AuthError, ModelpackError, NotFoundError, RegistryError, UsageError
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, parse
from modelpack.oci.target import Target
from modelpack.registry.reference import OCI_SCHEME, Reference, parse_reference
from modelpack.store.layout import LayoutStore, default_store_path
from modelpack.store.storerepo import StoreRepository

if TYPE_CHECKING:
    import httpx

    from modelpack.registry.client import RegistryRepository
    from modelpack.registry.transport import RegistryClient

Kind = Literal["registry", "layout", "store"]
# A local repository name: the distribution grammar (lowercase components), optionally under a registry
# host when it is the store's copy of a pulled release.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LOCAL_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class TlsOptions:
    ca_file: str | None = None
    insecure: bool = False  # skip certificate verification
    plain_http: bool | None = None  # None: plain HTTP for loopback registries only (as docker)


def has_registry_host(text: str) -> bool:
    """docker's rule: the first of several components is a host when it has a '.' or ':' or is localhost."""
    first, sep, _ = text.partition("/")
    return bool(sep) and (any(c in first for c in ".:[") or first == "localhost")


@dataclass(frozen=True)
class Location:
    """A resolved name: the repository-scoped target, the tag or digest in it, and how to show it."""

    target: Target
    ref: str | None  # tag or digest; None when the text named only a repository
    repository: str  # as the user recognises it: `ghcr.io/acme/iris`, `oci:./backup`, `iris`
    kind: Kind
    reference: Reference | None = None  # the parsed registry or layout reference; None for the store

    @property
    def is_local(self) -> bool:
        return self.kind == "store"

    @property
    def display(self) -> str:
        return self.ref_text(self.ref)

    def ref_text(self, ref: str | None) -> str:
        if ref is None:
            return self.repository
        return f"{self.repository}{'@' if digests.is_digest(ref) else ':'}{ref}"

    def need_ref(self, verb: str) -> str:
        if self.ref is None:
            raise UsageError(
                f"{self.repository!r} names no release to {verb}",
                hint=f"add a version: {self.repository}:1.0.0",
            )
        return self.ref

    def with_ref(self, ref: str | None) -> Location:
        return Location(self.target, ref, self.repository, self.kind, self.reference)


Resolved = Location  # the name callers used before the naming model had one rule


def split_name(text: str) -> tuple[str, str | None]:
    """`NAME[:TAG|@DIGEST]` -> (NAME, ref); the last ':' after the last '/' starts a tag, as in docker."""
    if "@" in text:
        name, ref = text.split("@", 1)
        if not digests.is_digest(ref):
            raise UsageError(f"digest {ref!r} in {text!r} is malformed", hint="expected sha256:<64 hex>")
        return name, ref
    slash, colon = text.rfind("/"), text.rfind(":")
    if colon > slash:
        name, tag = text[:colon], text[colon + 1 :]
        if not _TAG.match(tag):
            raise UsageError(
                f"tag {tag!r} in {text!r} is malformed",
                hint="tags are up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            )
        return name, tag
    return text, None


class Targets:
    """Resolves names and owns the registry clients (one connection pool per registry); close when done.

    `transport` is httpx's seam: every registry client sends through it instead of the network (an
    in-process registry in tests, a fault-injecting proxy); None is the network."""

    def __init__(
        self,
        tls: TlsOptions = TlsOptions(),
        store_path: Path | None = None,
        environ: Mapping[str, str] = os.environ,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.tls = tls
        self.environ = environ
        self.transport = transport
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
        from modelpack.registry.transport import RegistryClient  # httpx: only when a registry is used

        if registry not in self._clients:
            self._clients[registry] = RegistryClient(
                registry,
                ca_file=self.tls.ca_file,
                insecure=self.tls.insecure,
                plain_http=self.tls.plain_http,
                transport=self.transport,
            )
        return self._clients[registry]

    def repository(self, ref: Reference) -> RegistryRepository:
        from modelpack.registry.client import RegistryRepository
        from modelpack.store.uploads import UploadSessions

        # a push killed half-way continues where the registry stopped on the next run
        return RegistryRepository(
            self.client(ref.registry), ref.repository, sessions=UploadSessions(self.store_path)
        )

    def store_repository(self, name: str) -> StoreRepository:
        return StoreRepository(self.store, name)

    def open(self, text: str, *, local: bool = False, must_exist: bool = True) -> Location:
        """Resolve `text` by the module's rule. `must_exist`: a store repository with no tags is an error
        naming the store (a destination may be new: pass False)."""
        if not isinstance(text, str) or not text.strip() or text != text.strip():
            raise UsageError(f"{text!r} is not a name", hint="e.g. iris:1.0.0 or ghcr.io/acme/iris:1.0.0")
        if text.startswith(OCI_SCHEME):
            ref = parse_reference(text)
            assert ref.layout_path is not None
            layout = LayoutStore(Path(ref.layout_path))
            return Location(layout, ref.digest or ref.tag, ref.name, "layout", ref)
        if has_registry_host(text) and not local:
            ref = parse_reference(text)
            return Location(self.repository(ref), ref.digest or ref.tag, ref.name, "registry", ref)
        name, ref_in = split_name(text)
        if has_registry_host(text):
            name = parse_reference(name).name  # the store keeps a pulled release under its canonical name
        elif not _LOCAL_NAME.match(name):
            raise UsageError(
                f"{name!r} is not a repository name",
                hint="lowercase letters, digits and . _ - between them, e.g. iris or acme/iris; "
                "a registry needs its host: ghcr.io/acme/iris",
            )
        repo = self.store_repository(name)
        if must_exist and not repo.exists():
            if ref_in is not None:
                repo.get_manifest(ref_in)  # raises the one wording: "no release NAME:TAG in the local store"
            raise NotFoundError(
                f"no repository {name} in the local store {self.store_path}",
                hint="see `modelpack list`; a registry needs its host, e.g. ghcr.io/acme/iris",
            )
        return Location(repo, ref_in, name, "store")

    @contextmanager
    def pulled_copy_hint(self, text: str, *, local: bool = False) -> Iterator[None]:
        """Around a read of a registry release: when the registry cannot be reached (or errs) and the local
        store holds a pulled copy under that name, the error says so and how to read it (`--local`)."""
        try:
            yield
        except RegistryError as e:
            if local or isinstance(e, AuthError) or not has_registry_host(text) or not self._pulled(text):
                raise
            hint = f"a pulled copy of {text} exists in the local store: add --local"
            raise type(e)(e.message, hint=hint) from None

    def _pulled(self, text: str) -> bool:
        try:
            name, ref_in = split_name(text)
            repo = self.store_repository(parse_reference(name).name)
            if not repo.exists():
                return False
            if ref_in is not None:
                repo.get_manifest(ref_in)
            return True
        except ModelpackError:
            return False

    def open_base(self, text: str) -> Location:
        """A base image: docker's short-name rule (`python:3.11-slim` is Docker Hub's)."""
        ref = parse_reference(text)
        if ref.is_layout:
            assert ref.layout_path is not None
            return Location(
                LayoutStore(Path(ref.layout_path)), ref.digest or ref.tag, ref.name, "layout", ref
            )
        return Location(self.repository(ref), ref.digest or ref.tag, ref.name, "registry", ref)

    def base_sources(self, source: Target, ref: str) -> list[Target]:
        """Where the base layers of the serving images under `ref` (an index or one image) live: the
        registries their base.name annotations name. The store keeps serving images without those layers;
        push, copy and `test` read them from there (without importing the image builder)."""
        raw = source.get_manifest(ref)
        doc = parse(raw.raw, raw.media_type)
        children = (
            [parse(source.get_manifest(d.digest).raw) for d in doc.manifests]
            if isinstance(doc, Index)
            else [doc]
        )
        names = sorted(
            {c.annotations[mt.ANN_BASE_NAME] for c in children if mt.ANN_BASE_NAME in c.annotations}
        )
        return [self.open_base(n).target for n in names]
