"""What the pages show, read through `modelpack.api` only, with the portal's caches in front.

Every answer is the api result's `to_json()`: plain dicts and lists, which is what the templates read, so
a page shows exactly what `--json` would print. Reads that move (tags, referrers, history) go through the
short-lived memo; immutable bodies (manifests, report payloads, diffs between two digests) through the
disk cache by digest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from modelpack import api
from modelpack.errors import ModelpackError
from modelpack.portal.cache import DiskCache, Memo

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slugs(repositories: Sequence[str]) -> dict[str, str]:
    """A file-name-safe, unique slug for each repository, stable for a given list."""
    out: dict[str, str] = {}
    for repo in repositories:
        base = _UNSAFE.sub("_", repo).strip("._-") or "repo"
        slug, n = base, 1
        while slug in out.values():
            n += 1
            slug = f"{base}-{n}"
        out[repo] = slug
    return out


@dataclass(frozen=True)
class Query:
    """A repository page's table: the `ls --sort/--where` options."""

    sort: str | None = None
    asc: bool = False
    where: tuple[str, ...] = ()


class Source:
    def __init__(self, targets: api.Targets, repositories: Sequence[str], disk: DiskCache, memo: Memo):
        self.targets = targets
        self.repositories = tuple(repositories)
        self.slug_of = slugs(self.repositories)
        self.repo_of = {s: r for r, s in self.slug_of.items()}
        self.disk = disk
        self.memo = memo

    def catalog(self, repo: str, q: Query = Query()) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            result = api.catalog(self.targets, repo, sort=q.sort, asc=q.asc, where=q.where, cache=self.disk)
            return result.to_json()

        return self.memo.get(("catalog", repo, q), read)

    def catalogs(self) -> dict[str, dict[str, Any] | str]:
        """Each repository's catalog, or the one-line error that stopped it (the others still show)."""

        def one(repo: str) -> dict[str, Any] | str:
            try:
                return self.catalog(repo)
            except ModelpackError as e:
                return str(e)

        with ThreadPoolExecutor(max_workers=max(1, min(4, len(self.repositories)))) as pool:
            return dict(zip(self.repositories, pool.map(one, self.repositories), strict=True))

    def inspect(self, repo: str, tag: str) -> dict[str, Any]:
        ref = f"{repo}:{tag}"
        return self.memo.get(("inspect", ref), lambda: api.inspect(self.targets, ref).to_json())

    def evidence(self, repo: str, digest: str) -> list[dict[str, Any]]:
        ref = f"{repo}@{digest}"
        return self.memo.get(
            ("evidence", ref), lambda: [a.to_json() for a in api.evidence(self.targets, ref)]
        )

    def report(self, repo: str, digest: str) -> dict[str, Any]:
        return dict(api.report(self.targets, repo, digest, cache=self.disk).report)

    def history(self, repo: str, env: str) -> dict[str, Any]:
        return self.memo.get(("history", repo, env), lambda: api.history(self.targets, repo, env).to_json())

    def curves(self, repo: str, digest: str) -> dict[str, Any]:
        """The release's training curves (`api.training_curves`)."""
        ref = f"{repo}@{digest}"
        return self._by_digest("curves", digest, lambda: api.training_curves(self.targets, ref))

    def dataset(self, repo: str, digest: str) -> dict[str, Any]:
        """A dataset version (`api.dataset_inspect`) by digest."""
        ref = f"{repo}@{digest}"
        return self._by_digest("dataset", digest, lambda: api.dataset_inspect(self.targets, ref))

    def _by_digest(self, kind: str, digest: str, read: Callable[[], Any]) -> dict[str, Any]:
        """What is read by digest is immutable: cached on disk under it, never re-read."""
        key = f"{kind}:{digest}"
        hit = self.disk.get(key)
        if hit is not None:
            cached: dict[str, Any] = json.loads(hit)
            return cached
        out: dict[str, Any] = read().to_json()
        self.disk.put(key, json.dumps(out).encode())
        return out

    def runs(self, repo: str, q: Query = Query()) -> dict[str, Any]:
        """An experiment's runs (`api.runs_ls`): the where conditions and the sort of the page's query."""

        def read() -> dict[str, Any]:
            return api.runs_ls(self.targets, repo, where=q.where, sort=q.sort, asc=q.asc).to_json()

        return self.memo.get(("runs", repo, q), read)

    def run(self, repo: str, run_id: str) -> dict[str, Any]:
        """One run with its curves (`api.runs_show`); a finished run never changes, so it is kept by id."""
        key = ("run", repo, run_id)
        return self.memo.get(
            key, lambda: api.runs_show(self.targets, f"{repo}:{run_id}", curves=True).to_json()
        )

    def dataset_versions(self, repo: str) -> dict[str, Any]:
        return self.memo.get(("datasets", repo), lambda: api.dataset_ls(self.targets, repo).to_json())

    def diff(self, repo: str, a: str, b: str, digest_a: str, digest_b: str) -> dict[str, Any]:
        """A diff of two digests never changes: cached on disk by the pair."""
        key = f"diff:{digest_a}:{digest_b}"
        hit = self.disk.get(key)
        if hit is not None:
            cached: dict[str, Any] = json.loads(hit)
            return cached
        out = api.diff(self.targets, f"{repo}@{digest_a}", f"{repo}@{digest_b}").to_json()
        out["a"], out["b"] = f"{repo}:{a}", f"{repo}:{b}"
        self.disk.put(key, json.dumps(out).encode())
        return out
