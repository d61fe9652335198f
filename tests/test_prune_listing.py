"""`prune` against a registry whose tag listing omits `prod` (issue 21, item 12): a proxy on 127.0.0.1 in
front of the real registry drops `prod` from every tags/list answer, as a hostile or flaky registry would.
prune reads every environment tag by name before deleting and deletes nothing prod needs."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.prune_repos import gone, populate
from support.refusing_proxy import refusing_proxy

from modelpack.targets import Targets


def _without(tag: str):  # type: ignore[no-untyped-def]
    def rewrite(method: str, path: str, body: bytes) -> bytes:
        if method == "GET" and "/tags/list" in path:
            doc = json.loads(body)
            doc["tags"] = [t for t in doc.get("tags") or [] if t != tag]
            return json.dumps(doc).encode()
        return body

    return rewrite


def test_a_listing_that_omits_prod_deletes_nothing(
    registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    targets = Targets(store_path=tmp_path / "store", environ={})
    r = populate(registry.host, repo, targets)
    prod = r.target.get_manifest("prod").digest
    assert prod == r.digests["1.5.0"]
    before = sorted(r.target.list_tags())
    with refusing_proxy(registry.host, lambda _m, _p: False, rewrite=_without("prod")) as host:
        out = run_main("prune", f"{host}/{repo}", "--keep-last", "1", "--history", "1", "--yes",
                       "--store", str(tmp_path / "s"))  # fmt: skip
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "omitted it" in out.stderr and ":prod names" in out.stderr and "nothing was deleted" in out.stderr
    assert sorted(r.target.list_tags()) == before  # nothing deleted
    for v in ("1.5.0", "1.3.0"):  # prod's release and its rollback target
        assert not gone(r.target, r.digests[v])
    targets.close()
