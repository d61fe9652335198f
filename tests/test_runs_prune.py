"""`runs prune`: failed, killed and intermediate runs go; the running, each dataset version's best, the
recent and every run a release came from stay."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.clirun import run_cli

from modelpack import api, track
from modelpack.runs.listing import SHARD_PREFIX, shard_entries
from modelpack.runs.prune import plan
from modelpack.runs.record import Summary
from modelpack.targets import Targets


def _s(
    run_id: str, status: str, f1: float | None, datasets: tuple[str, ...], started: str = "2026-12-01"
) -> Summary:
    metrics = {} if f1 is None else {"f1": f1}
    return Summary(run_id, status, f"{started}T00:00:00.000Z", 1.0, {}, metrics, (), datasets)


V2, V3 = "sha256:" + "2" * 64, "sha256:" + "3" * 64


def test_the_rule_keeps_best_per_dataset_version_released_running_and_recent() -> None:
    runs = [
        _s("a", "finished", 0.90, (V2,)),
        _s("b", "finished", 0.80, (V2,)),
        _s("c", "finished", 0.70, (V3,)),
        _s("d", "failed", None, (V3,)),
        _s("e", "killed", 0.99, (V3,)),
        _s("f", "running", None, (V3,)),
        _s("g", "finished", 0.60, (V3,)),
        _s("h", "finished", 0.10, (V2,), started="2026-12-06"),
    ]
    decided = plan(runs, metric="f1", released={"g": "acme/iris:1.0.0"},
                   keep_since=datetime(2026, 12, 5, tzinfo=UTC))  # fmt: skip
    kept = {d.id: d.reasons for d in decided if d.keep}
    assert set(kept) == {"a", "c", "f", "g", "h"}
    assert kept["g"] == ("release acme/iris:1.0.0 came from it",) and kept["f"] == ("still running",)
    dropped = {d.id: d.reasons[0] for d in decided if not d.keep}
    assert dropped == {"b": "f1 0.8 below a's", "d": "failed", "e": "killed"}  # a killed run is never "best"
    assert {d.id for d in plan(runs, metric=None) if not d.keep} == {"d", "e"}  # no metric: finished stay
    assert {d.id for d in plan(runs, metric="f1", ascending=True) if d.keep} == {"f", "g", "h"}  # lowest wins


def test_prune_drops_tags_and_listing_entries(registry, tmp_path: Path) -> None:
    repo = f"{registry.host}/acme/prune-runs"
    store = tmp_path / "store"
    ids = {}
    for name, f1 in (("best", 0.9), ("worse", 0.5)):
        with track.run(params={"name": name}, repo=repo, store=store, sample_every=60) as run:
            run.log(0, f1=f1)
        ids[name] = run.id
    with pytest.raises(RuntimeError), track.run(repo=repo, store=store, sample_every=60) as run:
        raise RuntimeError("boom")
    ids["failed"] = run.id

    env = {"MODELPACK_STORE": str(store)}
    preview = run_cli("runs", "prune", repo, "--metric", "f1", "--json", env=env)
    assert preview.returncode == 0, preview.stderr
    planned = json.loads(preview.stdout)
    assert planned["dryRun"] and planned["deleted"] == []
    assert {d["id"] for d in planned["decisions"] if not d["keep"]} == {ids["worse"], ids["failed"]}

    done = run_cli("runs", "prune", repo, "--metric", "f1", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["deleted"]) == {ids["worse"], ids["failed"]}
    with Targets(store_path=tmp_path / "fresh") as targets:
        assert [s.id for s in api.runs_ls(targets, repo).runs] == [ids["best"]]
        target = targets.open(repo).target
        listed = {
            e.digest
            for t in target.list_tags()
            if t.startswith(SHARD_PREFIX)
            for e in shard_entries(target, t)
        }
        assert len(listed) == 1
