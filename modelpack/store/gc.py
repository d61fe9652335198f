"""Garbage collection for a layout store: which blobs are reachable, and removing the others safely.

Reachable: everything named, transitively, by index.json entries: tagged entries and untagged ones without a
subject are roots; an index names its manifests, a manifest its config and layers, and both their subject.
An untagged entry with a subject (a referrer: test report, promotion event) is kept only while its subject
is reachable; once its subject is gone, the entry is dropped from index.json and its blobs collected.

The safety rule, for writers running while gc runs:
- gc holds `.gc.lock` exclusively and every blob write holds it shared, so no blob is being written while gc
  runs; every temp file under `blobs/.tmp/` is therefore a leftover of a crash, and removed.
- A complete blob that nothing names yet may be part of a copy in progress (blobs land before the manifest
  and tag that name them). So an unreachable blob is removed only once its mtime is older than the grace
  period (default 1 h); a write that finds the blob already there refreshes its mtime.

Source-backed blobs (`sourced/<alg>/<hex>`, store/sourced.py) follow the same rule, and one more: an entry
whose source file is gone or changed can never be served again, so it is dropped even when a tag names
it (a push of that release then says the blob is missing and to rebuild). The sweep runs with the index
lock held too, so the tags it keeps cannot change under it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from modelpack.errors import ModelpackError, StoreError
from modelpack.oci import digest, mediatypes
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor, Index, Manifest, parse
from modelpack.store.atomic import atomic_write
from modelpack.store.blobs import GC_LOCK, INDEX_LOCK

if TYPE_CHECKING:
    from modelpack.store.layout import LayoutStore

Loader = Callable[[Descriptor], Manifest | Index | None]  # None: blob absent or not a manifest/index
DOCUMENT_TYPES = mediatypes.MANIFEST_TYPES | mediatypes.INDEX_TYPES


@dataclass(frozen=True)
class GcResult:
    removed_blobs: int
    freed_bytes: int
    removed_temp_files: int = 0
    dropped_entries: int = 0  # untagged referrer entries whose subject is gone
    kept_young: int = 0  # unreachable blobs spared by the grace period
    stale_sources: int = 0  # source-backed blobs dropped because their file is gone or changed (in removed)


def collect(store: LayoutStore, *, grace_seconds: float, now: float) -> GcResult:
    """The whole of `modelpack gc` on one store: refuses (StoreError) when a writer holds the store."""
    if not store.index_path.is_file():
        return GcResult(0, 0)
    with store.lock(GC_LOCK, blocking=False), store.lock(INDEX_LOCK):
        index = store.read_index()
        _check_roots(store, index)
        live, kept = reachable(index.manifests, lambda d: _load_document(store, d))
        if len(kept) != len(index.manifests):
            atomic_write(store.index_path, index.replace(manifests=tuple(kept)).to_bytes())
        result = sweep(store.root / "blobs", live, grace_seconds=grace_seconds, now=now)
        refs = sweep_sourced(store, live, grace_seconds=grace_seconds, now=now)
        temps = remove_stale_index_temps(store.root)
    return replace(
        result,
        removed_blobs=result.removed_blobs + refs.removed_blobs,
        freed_bytes=result.freed_bytes + refs.freed_bytes,
        removed_temp_files=result.removed_temp_files + refs.removed_temp_files + temps,
        dropped_entries=len(index.manifests) - len(kept),
        kept_young=result.kept_young + refs.kept_young,
        stale_sources=refs.stale_sources,
    )


def _check_roots(store: LayoutStore, index: Index) -> None:
    """A tagged manifest that is missing, does not hash to its name or does not parse would leave its
    children looking unreachable: gc refuses (naming it) and deletes nothing."""
    for entry in index.manifests:
        tag = entry.annotations.get(mediatypes.ANN_REF_NAME)
        if tag is None:
            continue
        try:
            raw = store.read_blob_bytes(entry.digest, max_size=MAX_MANIFEST_BYTES)
            if digest.of_bytes(raw) != entry.digest:
                raise StoreError(f"its blob does not hash to {entry.digest}")
            parse(raw, entry.media_type)
        except ModelpackError as e:
            raise StoreError(
                f"gc refused: the tagged manifest {tag} ({entry.digest}) in {store.root} cannot be read "
                f"({e.message}); nothing was deleted",
                hint="remove or re-pull that tag (modelpack pull / build), then run gc again",
            ) from None


def _load_document(store: LayoutStore, desc: Descriptor) -> Manifest | Index | None:
    try:
        if not store.has_blob(desc.digest):
            return None
        return parse(store.read_blob_bytes(desc.digest, max_size=MAX_MANIFEST_BYTES), desc.media_type)
    except ModelpackError:
        return None  # unreadable or not a manifest: keep what it is, walk no further


def sweep_sourced(store: LayoutStore, live: set[str], *, grace_seconds: float, now: float) -> GcResult:
    """Source-backed entries: stale or damaged ones always go, unreachable ones after the grace period;
    temps of an interrupted entry write (dot names) always go (caller holds .gc.lock exclusively)."""
    removed = freed = temps = young = stale = 0
    top = store.root / "sourced"
    for alg_dir in sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else []:
        for path in sorted(alg_dir.iterdir()):
            if path.name.startswith("."):
                path.unlink(missing_ok=True)
                temps += 1
                continue
            dgst = f"{alg_dir.name}:{path.name}"
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            try:
                entry = store.sourced(dgst) if digest.is_digest(dgst) else None
                bad = entry is None or entry.changed() is not None
            except StoreError:
                bad = True
            if not bad and dgst in live:
                continue
            if not bad and now - st.st_mtime < grace_seconds:
                young += 1
                continue
            path.unlink(missing_ok=True)
            removed += 1
            stale += bad
            freed += st.st_size
    return GcResult(removed, freed, temps, kept_young=young, stale_sources=stale)


def _tagged(entry: Descriptor) -> bool:
    return mediatypes.ANN_REF_NAME in entry.annotations


def reachable(entries: Sequence[Descriptor], load: Loader) -> tuple[set[str], list[Descriptor]]:
    """Digests reachable from index.json `entries`, and the entries to keep (module doc)."""
    seen: set[str] = set()
    docs: dict[str, Manifest | Index | None] = {}

    def doc_of(d: Descriptor) -> Manifest | Index | None:
        if d.digest not in docs:
            docs[d.digest] = load(d) if d.media_type in DOCUMENT_TYPES else None
        return docs[d.digest]

    def walk(start: Iterable[Descriptor]) -> None:
        stack = list(start)
        while stack:
            d = stack.pop()
            if d.digest in seen:
                continue
            seen.add(d.digest)
            doc = doc_of(d)
            if isinstance(doc, Manifest):
                stack.extend([doc.config, *doc.layers])
            elif isinstance(doc, Index):
                stack.extend(doc.manifests)
            if doc is not None and doc.subject is not None:
                stack.append(doc.subject)

    def is_referrer(e: Descriptor) -> bool:
        doc = doc_of(e)
        return doc is not None and doc.subject is not None

    kept = [e for e in entries if _tagged(e) or not is_referrer(e)]
    walk(kept)
    pending = [e for e in entries if e not in kept]
    while True:  # referrers of referrers: repeat until nothing more becomes reachable
        now_kept = [e for e in pending if (doc := doc_of(e)) and doc.subject and doc.subject.digest in seen]
        if not now_kept:
            break
        kept.extend(now_kept)
        pending = [e for e in pending if e not in now_kept]
        walk(now_kept)
    kept_ids = {id(e) for e in kept}
    return seen, [e for e in entries if id(e) in kept_ids]


def sweep(blobs: Path, live: set[str], *, grace_seconds: float, now: float) -> GcResult:
    """Remove unreachable blobs older than the grace period and every temp file (caller holds .gc.lock)."""
    removed = freed = temps = young = 0
    tmp_dir = blobs / ".tmp"
    if tmp_dir.is_dir():
        for tmp in tmp_dir.iterdir():
            tmp.unlink(missing_ok=True)
            temps += 1
    if not blobs.is_dir():
        return GcResult(0, 0, temps)
    for alg_dir in sorted(p for p in blobs.iterdir() if p.is_dir() and p.name != ".tmp"):
        for blob in alg_dir.iterdir():
            if f"{alg_dir.name}:{blob.name}" in live:
                continue
            try:
                st = blob.stat()
            except FileNotFoundError:
                continue
            if now - st.st_mtime < grace_seconds:
                young += 1
                continue
            blob.unlink(missing_ok=True)
            removed += 1
            freed += st.st_size
    return GcResult(removed, freed, temps, kept_young=young)


def remove_stale_index_temps(root: Path) -> int:
    """Temp files of an index.json rewrite torn by a crash (caller holds the index lock)."""
    count = 0
    for tmp in root.glob(".index.json.*"):
        os.unlink(tmp)
        count += 1
    return count
