"""An experiment's runs in one repository: written by tag, listed from a few index reads.

One repository is one experiment (`127.0.0.1:5000/acme/iris-runs`): runs are its only content, so the
model's own repository keeps listing releases alone and an experiment can be granted, mirrored or pruned
as a unit. Each run is tagged `run-<id>` (the truth: a run exists when its tag does) and its descriptor,
summary annotation included, is copied into one of SHARDS listing indexes (`runs-index-<x>`, x the first
hex digit of the id's sha256). `runs ls` reads the tag list and the shards (SHARDS requests, in
parallel) instead of one manifest per run; a run its shard misses (two writers raced on it and the
read-back did not settle it) is read by its tag, so nothing is ever unlisted.

Why not the referrers API: registries without it (distribution 2.8, what Debian ships) keep referrers in
one fallback index, which a manifest's 4 MiB limit caps near 10,000 runs, and every writer would race on
it. Sixteen shards hold 160,000 runs of ~400-byte summaries, and concurrent writers rarely meet.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import ContentError, NotFoundError, RefusedError
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index, Manifest, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.runs.artifact import Blob, manifest_of, put, run_tag, summary_obj, summary_of, write_blobs
from modelpack.runs.record import FINAL, Summary

SHARDS = 16
SHARD_PREFIX = "runs-index-"
RUN_PREFIX = "run-"
VERIFY_ATTEMPTS = 4
WORKERS = 8


def shard_tag(run_id: str) -> str:
    return f"{SHARD_PREFIX}{hashlib.sha256(run_id.encode()).hexdigest()[:1]}"


def refuse_rewrite(target: Target, run_id: str, digest: str) -> str | None:
    """The one rule that keeps a finished run immutable, for a write and a push alike: another digest under
    `run-<id>` is refused when the run there is finished. Returns the digest there now (None: absent)."""
    tag = run_tag(run_id)
    try:
        existing = target.get_manifest(tag)
    except NotFoundError:
        return None
    if existing.digest != digest:
        old = manifest_of(existing, f"{target.describe()}:{tag}")
        summary = summary_of(old.descriptor(annotations=dict(old.annotations)))
        if summary is not None and summary.status in FINAL:
            raise RefusedError(
                f"run {run_id} in {target.describe()} is {summary.status}, immutable, and has another digest",
                hint="a finished run is never rewritten; start a new run",
            )
    return existing.digest


def write_run(target: Target, manifest: Manifest, blobs: Sequence[Blob], run_id: str) -> str:
    """Stores the run under `run-<id>` and lists it. A finished run is immutable: another digest under its
    tag is refused; the same digest again is a no-op (a retried push)."""
    refuse_rewrite(target, run_id, manifest.digest)
    tag = run_tag(run_id)
    write_blobs(target, blobs)
    put(target, manifest, manifest.digest)
    digest = put(target, manifest, tag)
    add_to_listing(
        target,
        manifest.descriptor(artifact_type=mt.RUN_ARTIFACT, annotations=dict(manifest.annotations)),
        run_id,
    )
    return digest


def add_to_listing(target: Target, desc: Descriptor, run_id: str) -> None:
    """Read-modify-write of the run's shard, read back until our entry holds: registries offer no
    conditional PUT, so a concurrent writer can drop it; the tag still lists the run if all attempts lose."""
    tag = shard_tag(run_id)
    for _ in range(VERIFY_ATTEMPTS):
        current = shard_entries(target, tag)
        if any(d.digest == desc.digest for d in current):
            return
        entries = sorted([*(d for d in current if id_of(d) != run_id), desc], key=lambda d: id_of(d) or "")
        index = Index(manifests=tuple(entries), artifact_type=mt.RUN_LISTING)
        raw = canonical.dumps(index.to_json())
        target.put_manifest(tag, RawManifest(raw, mt.OCI_INDEX, digests.of_bytes(raw)))


def shard_entries(target: Target, tag: str) -> list[Descriptor]:
    return read_shard(target, tag)[1]


def read_shard(target: Target, tag: str) -> tuple[str | None, list[Descriptor]]:
    """(the shard's digest, its entries); (None, []) when there is no such shard."""
    try:
        raw = target.get_manifest(tag)
    except NotFoundError:
        return None, []
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Index) or doc.artifact_type != mt.RUN_LISTING:
        raise ContentError(f"{target.describe()}:{tag} is not a runs listing")
    return raw.digest, list(doc.manifests)


def id_of(desc: Descriptor) -> str | None:
    s = summary_of(desc)
    return s.id if s is not None else None


@dataclass(frozen=True)
class Listing:
    runs: tuple[Summary, ...]
    requests: int  # reads it took: the tag list, the shards, and one per run a shard missed
    unlisted: int  # runs found by tag alone


def list_runs(
    target: Target,
    *,
    workers: int = WORKERS,
    tags: Callable[[], list[str]] | None = None,
    cache: ShardCache | None = None,
) -> Listing:
    """Every run of the experiment, each with its summary, newest first. With a `cache`, a shard whose
    digest (a HEAD) is the one read last time is not read or parsed again."""
    all_tags = (tags or target.list_tags)()
    shard_tags = [t for t in all_tags if t.startswith(SHARD_PREFIX)]
    run_ids = {t[len(RUN_PREFIX) :] for t in all_tags if t.startswith(RUN_PREFIX)}
    found: dict[str, Summary] = {}
    where = target.describe()

    def shard(tag: str) -> list[Summary]:
        resolve = getattr(target, "resolve", None)  # a registry's HEAD; a local layout is read anyway
        if cache is not None and resolve is not None:
            hit = cache.get(where, tag, resolve(tag).digest)
            if hit is not None:  # rows checked when they were cached
                return [Summary.trusted(obj, digest) for obj, digest in hit]
        digest, entries = read_shard(target, tag)
        rows, out = [], []
        for d in entries:
            obj = summary_obj(d)
            try:
                s = Summary.from_json(obj, digest=d.digest) if obj is not None else None
            except ContentError:
                continue  # a malformed entry: its run is read by its tag instead
            if s is not None and obj is not None:
                rows.append((obj, d.digest))
                out.append(s)
        if cache is not None and digest is not None:
            cache.put(where, tag, digest, rows)
        return out

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(shard_tags) or 1))) as pool:
        for summaries in pool.map(shard, shard_tags):
            for s in summaries:
                if s.id in run_ids:  # an entry whose tag was pruned is gone
                    found[s.id] = s
    missing = sorted(run_ids - set(found))

    def one(run_id: str) -> Summary | None:
        try:
            raw = target.get_manifest(run_tag(run_id))
            m = manifest_of(raw, run_id)
        except (NotFoundError, ContentError):
            return None
        return summary_of(Descriptor(raw.media_type, raw.digest, len(raw.raw), dict(m.annotations)))

    if missing:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(missing)))) as pool:
            for read in pool.map(one, missing):
                if read is not None:
                    found[read.id] = read
    runs = sorted(found.values(), key=lambda s: (s.started, s.id), reverse=True)
    return Listing(tuple(runs), 1 + len(shard_tags) + len(missing), len(missing))


class ShardCache:
    """The summaries of each listing shard last read, on disk by experiment and shard tag, with the
    shard's digest: a warm `runs ls` sends a HEAD per shard and parses one JSON file each. Stale files are
    replaced, never kept beside (16 files per experiment at most)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, where: str, tag: str) -> Path:
        return self.root / hashlib.sha256(f"{where}\n{tag}".encode()).hexdigest()[:32]

    def get(self, where: str, tag: str, digest: str) -> list[tuple[dict[str, Any], str]] | None:
        try:
            obj = json.loads(self._path(where, tag).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(obj, dict) or obj.get("digest") != digest or not isinstance(obj.get("rows"), list):
            return None
        return [(row[0], row[1]) for row in obj["rows"]]

    def put(self, where: str, tag: str, digest: str, rows: list[tuple[dict[str, Any], str]]) -> None:
        path = self._path(where, tag)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(json.dumps({"digest": digest, "rows": rows}, separators=(",", ":")).encode())
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written costs the next listing a read, nothing else
