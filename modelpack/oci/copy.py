"""Copy a graph (index -> manifests -> config and layers, optionally referrers) from one Target to another.

Order is the safety property: every blob of the graph lands before any manifest is written, every manifest
before the index that names it, and the tag is written last, so a copy torn at any moment leaves no tag
pointing at an incomplete graph. The blobs of all the graph's manifests move in one pool (a release's
image layers and bundle layers side by side). Re-running a torn copy resends only what is missing (the
destination is asked first, blob by blob).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from modelpack.errors import NotFoundError, StoreError
from modelpack.oci.model import Descriptor, Index, Manifest, parse
from modelpack.oci.target import Progress, ProgressFn, RawManifest, Target, no_progress


@dataclass(frozen=True)
class CopyResult:
    digest: str  # of the root manifest or index
    media_type: str
    blobs_copied: int
    blobs_skipped: int
    bytes_copied: int
    manifests: int
    referrers: int = 0


@dataclass
class _Tally:
    copied: int = 0
    skipped: int = 0
    nbytes: int = 0
    manifests: int = 0
    referrers: int = 0
    seen: set[str] = field(default_factory=set)


def copy_graph(
    source: Target,
    dest: Target,
    ref: str,
    dest_ref: str | None = None,
    *,
    referrers: bool = False,
    carry: frozenset[str] = frozenset(),
    fallbacks: Sequence[Target] = (),
    progress: ProgressFn = no_progress,
    concurrency: int = 4,
) -> CopyResult:
    """Copy `ref` (tag or digest) of `source` to `dest`, tagging it `dest_ref` (default: the same tag).

    `carry`: artifact types of the root's referrers copied even without `referrers` (provenance and the
    SBOM travel with a release; test reports and promotion events belong to the place they were made in).

    `fallbacks` are where blobs the source does not hold live (a serving image's base layers stay in the
    base image's repository and are never pulled into the local store). The manifests are read first, so
    every blob of the graph (a release's image layers and its bundle's alike) moves in one pool of
    `concurrency` transfers; then the manifests are written, children before parents.
    """
    root = source.get_manifest(ref)
    tally = _Tally()
    order: list[RawManifest] = []  # every manifest below the root, each after everything it names
    blobs: dict[str, Descriptor] = {}
    _plan(source, root, tally, fallbacks, referrers, order, blobs)
    if carry and not referrers:  # the evidence that travels with a release even without --referrers
        for r in source.referrers(root.digest):
            if r.artifact_type in carry and r.digest not in tally.seen:
                child = source.get_manifest(r.digest)
                _plan(source, child, tally, fallbacks, False, order, blobs)
                order.append(child)
                tally.referrers += 1
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="modelpack-copy") as pool:
        futures = [pool.submit(_copy_blob, source, dest, b, fallbacks, progress) for b in blobs.values()]
        try:
            for f in futures:
                copied, nbytes = f.result()
                if copied:
                    tally.copied += 1
                    tally.nbytes += nbytes
                else:
                    tally.skipped += 1
        except BaseException:
            for f in futures:
                f.cancel()  # the queued ones never start; the running ones finish or fail on their own
            raise
    for manifest in order:
        dest.put_manifest(manifest.digest, manifest)  # a registry's write keeps its referrers index
    target_tag = dest_ref if dest_ref is not None else (None if ref.startswith("sha256:") else ref)
    dest.put_manifest(target_tag or root.digest, root)
    return CopyResult(
        digest=root.digest,
        media_type=root.media_type,
        blobs_copied=tally.copied,
        blobs_skipped=tally.skipped,
        bytes_copied=tally.nbytes,
        manifests=tally.manifests,
        referrers=tally.referrers,
    )


def _plan(
    source: Target,
    node: RawManifest,
    tally: _Tally,
    fallbacks: Sequence[Target],
    referrers: bool,
    order: list[RawManifest],
    blobs: dict[str, Descriptor],
) -> None:
    """Adds what `node` names to `order` (children first) and its blobs to `blobs`; not `node` itself:
    the caller places it, after its children."""
    if node.digest in tally.seen:
        return
    tally.seen.add(node.digest)
    doc = parse(node.raw, node.media_type)
    if isinstance(doc, Index):
        for child_desc in doc.manifests:
            child = _fetch_child(source, fallbacks, child_desc)
            _plan(source, child, tally, fallbacks, referrers, order, blobs)
            order.append(child)
            tally.manifests += 1
    elif isinstance(doc, Manifest):
        for b in (doc.config, *doc.layers):
            blobs.setdefault(b.digest, b)
    if referrers:
        for r in source.referrers(node.digest):
            child = source.get_manifest(r.digest)
            _plan(source, child, tally, fallbacks, referrers, order, blobs)
            order.append(child)
            tally.referrers += 1


def _fetch_child(source: Target, fallbacks: Sequence[Target], desc: Descriptor) -> RawManifest:
    for t in (source, *fallbacks):
        try:
            return t.get_manifest(desc.digest)
        except NotFoundError:
            continue
    raise NotFoundError(f"manifest {desc.digest} is in neither {source.describe()} nor its base")


def _copy_blob(
    source: Target, dest: Target, desc: Descriptor, fallbacks: Sequence[Target], progress: ProgressFn
) -> tuple[bool, int]:
    """Asks the destination first, so a re-run asks the sources nothing for what already landed; the
    destination then picks the cheapest way in (a mount, a resumable read from a holder)."""
    try:
        present = dest.has_blob(desc.digest)
    except StoreError:
        # a store blob served from a source file that changed since the build: unusable as it is, and
        # the real bytes written now replace it (a pull after the weights were edited is how to get it back)
        present = False
    if present:
        progress(_skip(desc))
        return False, 0
    result = dest.copy_blob_from(_holders(source, desc, fallbacks), desc, progress)
    return result.how == "upload", result.bytes_sent


def _holders(source: Target, desc: Descriptor, fallbacks: Sequence[Target]) -> list[Target]:
    holders = [t for t in (source, *fallbacks) if t.has_blob(desc.digest)]
    if not holders:
        raise NotFoundError(
            f"blob {desc.digest} is in neither {source.describe()} nor any base it names; "
            "rebuild, or check that the base image is still in its registry"
        )
    return holders


def _skip(desc: Descriptor, what: str = "skip") -> Progress:
    return Progress(digest=desc.digest, done=desc.size, total=desc.size, what=what)
