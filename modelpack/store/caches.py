"""The local store's caches beside its blobs, and when `gc` drops them.

    cache/deps/<key>          the installed deps tree behind a deps layer (the stat cache maps the key to
                              the layer's digest): kept while that layer is a blob of the store
    cache/releases/<hex>[.code]  a release's files unpacked for the local runtime: kept while the release
                              (sha256:<hex>) is in the store
    cache/layers/<hex>        an image layer unpacked for the local runtime: kept while that blob is
    cache/docker-save         leftovers of an interrupted Docker export: always dropped

Everything here can be made again from the blobs (or the wheels), so dropping an entry only costs time.
Entries younger than the grace period are kept: a build or test may be filling them right now.
`cache/wheels` (downloaded wheels, reused across locks) and the stat cache itself are kept.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelpack.store.statcache import StatCache


@dataclass(frozen=True)
class CacheSweep:
    removed: int
    freed_bytes: int


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def sweep_caches(
    root: Path,
    has_blob: Callable[[str], bool],
    stat_cache: StatCache,
    *,
    grace_seconds: float,
    now: Callable[[], float] = time.time,
) -> CacheSweep:
    cache = root / "cache"
    doomed: list[Path] = []
    deps = cache / "deps"
    for tree in sorted(deps.iterdir()) if deps.is_dir() else []:
        hit = stat_cache.get(["deps-layer", tree.name])
        if not (isinstance(hit, list) and hit and has_blob(str(hit[0]))):
            doomed.append(tree)
    for folder in ("releases", "layers"):
        for entry in sorted((cache / folder).iterdir()) if (cache / folder).is_dir() else []:
            hexd = entry.name.split(".", 1)[0]
            if not has_blob(f"sha256:{hexd}"):
                doomed.append(entry)
    if (cache / "docker-save").is_dir():
        doomed.append(cache / "docker-save")
    removed = freed = 0
    cutoff = now() - grace_seconds
    for path in doomed:
        try:
            if path.lstat().st_mtime > cutoff:
                continue
            size = _size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to remove: a cache never fails gc
        removed += 1
        freed += size
    return CacheSweep(removed, freed)
