"""Copy a graph (index -> manifests -> config and layers, optionally referrers) from one Target to another.

Order is the safety property: every blob lands before the manifest that names it, every manifest before
the index that names it, and the tag is written last, so a copy torn at any moment leaves no tag pointing
at an incomplete graph. Re-running a torn copy resends only what is missing (the destination is asked
first, blob by blob).
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
    base image's repository and are never pulled into the local store).
    """
    root = source.get_manifest(ref)
    tally = _Tally()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        _copy_node(source, dest, root, pool, tally, fallbacks, progress, referrers)
        if carry and not referrers:
            for r in source.referrers(root.digest):
                if r.artifact_type in carry:
                    child = source.get_manifest(r.digest)
                    _copy_node(source, dest, child, pool, tally, fallbacks, progress, False)
                    dest.put_manifest(child.digest, child)
                    tally.referrers += 1
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


def _copy_node(
    source: Target,
    dest: Target,
    node: RawManifest,
    pool: ThreadPoolExecutor,
    tally: _Tally,
    fallbacks: Sequence[Target],
    progress: ProgressFn,
    referrers: bool,
) -> None:
    """Copies everything `node` names (not `node` itself: the caller writes it, after its children)."""
    if node.digest in tally.seen:
        return
    tally.seen.add(node.digest)
    doc = parse(node.raw, node.media_type)
    if isinstance(doc, Index):
        for child_desc in doc.manifests:
            child = _fetch_child(source, fallbacks, child_desc)
            _copy_node(source, dest, child, pool, tally, fallbacks, progress, referrers)
            dest.put_manifest(child.digest, child)
            tally.manifests += 1
    elif isinstance(doc, Manifest):
        blobs = [doc.config, *doc.layers]
        futures = [pool.submit(_copy_blob, source, dest, b, fallbacks, progress) for b in _unique(blobs)]
        for f in futures:
            copied, nbytes = f.result()
            if copied:
                tally.copied += 1
                tally.nbytes += nbytes
            else:
                tally.skipped += 1
    if referrers:
        for r in source.referrers(node.digest):
            child = source.get_manifest(r.digest)
            _copy_node(source, dest, child, pool, tally, fallbacks, progress, referrers)
            dest.put_manifest(child.digest, child)  # a registry's write keeps its referrers index
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


def _unique(descs: Sequence[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for d in descs:
        seen.setdefault(d.digest, d)
    return list(seen.values())
