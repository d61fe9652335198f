"""copy_graph moves every blob of a release (all its manifests) in one pool, each blob exactly once, and
writes no manifest before all blobs landed."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from fixtures.registry import RegistryProcess
from support.registry_helpers import Requests, client_for

from modelpack.oci import mediatypes as mt
from modelpack.oci.copy import copy_graph
from modelpack.oci.model import Descriptor, Index, Manifest, Platform
from modelpack.oci.target import BlobCopy, ProgressFn, RawManifest, Target, no_progress
from modelpack.registry import RegistryRepository
from modelpack.store.layout import LayoutStore


class Watched:
    """A destination whose blob copies wait for each other at a barrier: the copy only completes if the
    blobs of both manifests are in flight at the same time. Manifest writes are recorded in order."""

    def __init__(self, inner: RegistryRepository, parties: int) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(parties, timeout=30)
        self.events: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def copy_blob_from(
        self, sources: Sequence[Target], desc: Descriptor, progress: ProgressFn = no_progress
    ) -> BlobCopy:
        self.barrier.wait()
        result = self.inner.copy_blob_from(sources, desc, progress)
        self.events.append(f"blob {desc.digest}")
        return result

    def put_manifest(self, ref: str, manifest: RawManifest) -> str:
        self.events.append(f"manifest {manifest.digest}")
        return self.inner.put_manifest(ref, manifest)


def _release(store: LayoutStore) -> tuple[list[Descriptor], str]:
    """An index over two manifests, each with its own layer, sharing one config."""
    config = store.put_blob_bytes(b'{"shared":true}', mt.OCI_CONFIG)
    layers = [store.put_blob_bytes(os.urandom(300_000), mt.OCI_LAYER_TAR) for _ in range(2)]
    entries = []
    for i, layer in enumerate(layers):
        m = store.put_document(Manifest(config=config, layers=(layer,)))
        entries.append(Descriptor(m.media_type, m.digest, m.size, platform=Platform("linux", f"arch{i}")))
    store.put_document(Index(manifests=tuple(entries)), tag="rel")
    return [config, *layers], "rel"


def test_blobs_of_all_manifests_move_together_each_once(
    registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    store = LayoutStore(tmp_path / "layout")
    blobs, tag = _release(store)
    seen = Requests()
    client = client_for(registry.host, event_hooks={"request": [seen]})
    dest = Watched(RegistryRepository(client, repo), parties=len(blobs))
    result = copy_graph(store, dest, tag)  # type: ignore[arg-type]
    assert (result.blobs_copied, result.blobs_skipped, result.manifests) == (3, 0, 2)
    assert seen.count("POST", "/blobs/uploads/") == len(blobs)  # one upload each, the shared config once
    assert sorted(e for e in dest.events if e.startswith("blob")) == sorted(f"blob {b.digest}" for b in blobs)
    first_manifest = next(i for i, e in enumerate(dest.events) if e.startswith("manifest"))
    assert all(e.startswith("manifest") for e in dest.events[first_manifest:])
    again = copy_graph(store, RegistryRepository(client, repo), tag)
    assert (again.blobs_copied, again.blobs_skipped) == (0, 3)
    client.close()
