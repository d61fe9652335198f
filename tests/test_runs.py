"""Experiment runs end to end: a real scikit-learn training recorded through `track` and `modelpack run --`,
one raising, one killed by SIGTERM, all in a real registry with the right status, and queried."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.clirun import run_cli, script

from modelpack import api
from modelpack.errors import RefusedError
from modelpack.oci import mediatypes as mt
from modelpack.runs.artifact import load_run, run_manifest
from modelpack.runs.listing import SHARD_PREFIX, ShardCache, list_runs, write_run
from modelpack.runs.record import RunRecord
from modelpack.targets import Targets

TRAIN = Path(__file__).parent / "fixtures" / "runs" / "train_iris.py"


def _env(store: Path, repo: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    env["MODELPACK_STORE"] = str(store)
    if repo:
        env["MODELPACK_TRACKING_REPO"] = repo
    env.update(extra)
    return env


def _train(mode: str, alpha: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TRAIN), mode, alpha], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def trained(registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    """Four trainings into one experiment: through the API (finishes), through `modelpack run --` (plain
    code, finishes), one raising, one killed by SIGTERM; returns the experiment, the store and id by mode."""
    work = tmp_path_factory.mktemp("training")
    store = work / "store"
    repo = f"{registry.host}/acme/iris-runs"
    env = _env(store, repo, OMP_NUM_THREADS="1", TORCH_SECRET_TOKEN="s3cr3t-value", GITHUB_TOKEN="ghp_x")
    ids: dict[str, str] = {}

    done = _train("track", "1e-4", env, work)
    assert done.returncode == 0, done.stderr
    ids["track"] = done.stdout.split()[-1]

    wrapped = subprocess.run(
        [str(script()), "run", "--tag", "sweep", "--param", "alpha=0.01", "--sample-every", "0.2", "--json",
         "--", sys.executable, str(TRAIN), "plain", "0.01"],
        env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert wrapped.returncode == 0, wrapped.stderr
    ids["plain"] = json.loads(wrapped.stdout[wrapped.stdout.index("{\n") :])["id"]

    failed = _train("raise", "0.001", env, work)
    assert failed.returncode == 1 and "loss diverged" in failed.stderr
    ids["raise"] = _newest_other(store, repo, ids)

    ready = work / "ready"
    proc = subprocess.Popen([sys.executable, str(TRAIN), "sigterm", "1e-4"], env={**env, "READY": str(ready)},
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 90
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the training never became ready"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # died of the signal, after recording
    ids["sigterm"] = ready.read_text()
    return repo, store, ids


def _newest_other(store: Path, repo: str, known: dict[str, str]) -> str:
    with Targets(store_path=store) as targets:
        runs = api.runs_ls(targets, repo).runs
    return next(s.id for s in runs if s.id not in known.values())


def test_the_registry_holds_every_run_with_its_status(trained, tmp_path: Path) -> None:
    repo, _, ids = trained
    with Targets(store_path=tmp_path / "fresh") as targets:  # nothing local: the registry alone answers
        result = api.runs_ls(targets, repo)
        status = {s.id: s.status for s in result.runs}
        assert status == {ids["track"]: "finished", ids["plain"]: "finished", ids["raise"]: "failed",
                          ids["sigterm"]: "killed"}  # fmt: skip
        failed = api.runs_show(targets, f"{repo}:{ids['raise']}").record
        assert failed.failure is not None and failed.failure.type == "RuntimeError"
        assert "loss diverged" in failed.failure.message and "train_iris.py" in failed.failure.traceback
        killed = api.runs_show(targets, f"{repo}:run-{ids['sigterm']}").record
        assert killed.failure is not None and (killed.failure.kind, killed.failure.type) == (
            "signal",
            "SIGTERM",
        )
        assert killed.steps == 5 and killed.ended is not None  # its metrics survived the kill


def test_a_run_records_metrics_params_environment_and_host(trained, tmp_path: Path) -> None:
    repo, _, ids = trained
    with Targets(store_path=tmp_path / "fresh") as targets:
        shown = api.runs_show(targets, f"{repo}:{ids['track']}", curves=True)
    r = shown.record
    assert r.params == {"alpha": 0.0001, "epochs": 5} and set(r.tags) == {"sweep", "track"}
    assert r.steps == 5 and set(r.metrics) == {"f1", "loss"} and 0.0 <= r.metrics["f1"] <= 1.0
    assert shown.curves is not None and [row[0] for row in shown.curves["rows"]] == [0, 1, 2, 3, 4]
    assert r.metrics["loss"] == shown.curves["rows"][-1][shown.curves["columns"].index("loss") + 1]
    assert shown.system is not None and shown.system["columns"][:2] == ["cpu_percent", "rss_bytes"]
    assert shown.system["rows"] and all(row[2] > 0 for row in shown.system["rows"])  # a live process's RSS
    assert r.duration is not None and r.duration > 0 and r.started < (r.ended or "")
    assert r.command[-2:] == ("track", "1e-4") and str(TRAIN) in r.command
    assert r.packages["scikit-learn"] and r.packages["numpy"]
    assert r.host.cpu_count == os.cpu_count() and r.host.memory_bytes and r.host.memory_bytes > 0
    assert r.env.get("OMP_NUM_THREADS") == "1"
    raw = r.to_bytes()
    assert b"s3cr3t-value" not in raw and b"TORCH_SECRET_TOKEN" not in raw and b"ghp_x" not in raw
    [checkpoint] = r.checkpoints
    assert (
        checkpoint.name == "model.pkl"
        and checkpoint.step == 4
        and checkpoint.files[0].digest.startswith("sha256:")
    )


def test_gpus_are_recorded_as_found_never_guessed(trained, tmp_path: Path) -> None:
    repo, _, ids = trained
    with Targets(store_path=tmp_path / "fresh") as targets:
        host = api.runs_show(targets, f"{repo}:{ids['track']}").record.host
    has_gpu = (
        shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi"], check=False).returncode == 0
    )
    if has_gpu:
        assert host.gpus and all(g.name and g.driver for g in host.gpus)
    else:
        assert host.gpus == () and "nvml" in host.gpu_probe and "nvidia-smi" in host.gpu_probe


def test_queries_answer_numeric_ranges_tags_and_status(trained, tmp_path: Path) -> None:
    repo, _, ids = trained
    with Targets(store_path=tmp_path / "fresh") as targets:

        def found(*where: str, **kw: object) -> set[str]:
            return {s.id for s in api.runs_ls(targets, repo, where=where, **kw).runs}  # type: ignore[arg-type]

        assert found("alpha<0.001") == {ids["track"], ids["sigterm"]}
        assert found("param.alpha=0.0001") == found("param=alpha=1e-4") == {ids["track"], ids["sigterm"]}
        assert found("alpha>=0.001", "alpha<=0.01") == {ids["raise"], ids["plain"]}
        assert found("tag=track") == {ids["track"]}
        assert found("tag=sweep", status=["finished"]) == {ids["track"], ids["plain"]}
        assert found("f1>=0") == set(ids.values()) - {ids["plain"]}  # the plain script logged no metric
        best = api.runs_ls(targets, repo, sort="f1", status=["finished", "killed"]).runs
        scores = [s.metrics["f1"] for s in best if "f1" in s.metrics]
        assert scores == sorted(scores, reverse=True) and len(scores) == 2
        assert found(since="1h") == set(ids.values()) and found(until="2000-01-01") == set()


def test_runs_diff_compares_n_runs(trained, tmp_path: Path) -> None:
    repo, store, ids = trained
    refs = [f"{repo}:{ids[m]}" for m in ("track", "raise", "plain")]
    done = run_cli("runs", "diff", *refs, "--json", env={"MODELPACK_STORE": str(tmp_path / "s")})
    assert done.returncode == 0, done.stderr
    rows = {(r["section"], r["key"]): r["values"] for r in json.loads(done.stdout)["rows"]}
    assert rows[("params", "alpha")] == [0.0001, 0.001, 0.01]
    assert rows[("run", "status")] == ["finished", "failed", "finished"]
    assert ("params", "epochs") in rows  # the wrapped run has no epochs param
    listed = run_cli(
        "runs", "ls", repo, "--where", "alpha<0.001", "--sort", "f1", env={"MODELPACK_STORE": str(store)}
    )
    assert listed.returncode == 0 and ids["track"] in listed.stdout and ids["plain"] not in listed.stdout
    bad = run_cli("runs", "ls", repo, "--where", "alpha<<1", env={"MODELPACK_STORE": str(store)})
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr
    gone = run_cli("runs", "show", f"{repo}:nope", env={"MODELPACK_STORE": str(store)})
    assert gone.returncode != 0 and "no run" in gone.stderr and "Traceback" not in gone.stderr


def test_eight_trainings_pushing_at_once_lose_nothing(registry, tmp_path: Path) -> None:
    repo = f"{registry.host}/acme/race-runs"
    code = (
        "import sys\nfrom modelpack import track\n"
        "with track.run(params={'i': int(sys.argv[1])}, sample_every=60) as run:\n"
        "    run.log(0, f1=int(sys.argv[1]) / 10)\nprint(run.id)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)],
            env=_env(tmp_path / f"store{i}", repo),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    ids = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.add(out.split()[-1])
    with Targets(store_path=tmp_path / "fresh") as targets:
        place = targets.open(repo)
        listing = list_runs(place.target)
        assert {s.id for s in listing.runs} == ids
        assert listing.requests <= 1 + 16 + listing.unlisted
        assert any(t.startswith(SHARD_PREFIX) for t in place.target.list_tags())
        cache = ShardCache(tmp_path / "shards")
        cold = list_runs(place.target, cache=cache).runs
        cached = sorted(p.name for p in (tmp_path / "shards").iterdir())
        assert cold == list_runs(place.target, cache=cache).runs and 0 < len(cached) <= 16
        for p in (tmp_path / "shards").iterdir():  # emptied, digest kept: used, so every run is found by tag
            p.write_text(json.dumps({"digest": json.loads(p.read_text())["digest"], "rows": []}))
        warm = list_runs(place.target, cache=cache)
        assert warm.unlisted == 8 and {s.id for s in warm.runs} == ids
        for p in (tmp_path / "shards").iterdir():  # a cache file whose digest is not the shard's is not used
            p.write_text('{"digest": "sha256:' + "0" * 64 + '", "rows": []}')
        fresh = list_runs(place.target, cache=cache)
        assert fresh.unlisted == 0 and {s.id for s in fresh.runs} == ids


def test_a_finished_run_is_immutable(registry, tmp_path: Path) -> None:
    from modelpack import track

    repo = f"{registry.host}/acme/immutable-runs"
    with track.run(params={"a": 1}, repo=repo, store=tmp_path / "store", sample_every=60) as run:
        run.log(0, f1=0.5)
    assert run.saved is not None and run.saved.pushed_to == f"{repo}:run-{run.id}"
    with Targets(store_path=tmp_path / "store") as targets:
        place = targets.open(repo)
        view = load_run(place.target, f"run-{run.id}", repo)
        forged = RunRecord.from_json({**view.record.to_json(), "metrics": {"f1": 0.99}})
        manifest, blobs = run_manifest(forged, None, None)
        with pytest.raises(RefusedError, match="immutable"):
            write_run(place.target, manifest, blobs, run.id)
        assert view.manifest.artifact_type == mt.RUN_ARTIFACT
        assert api.runs_show(targets, f"{repo}:{run.id}").record.metrics == {"f1": 0.5}


def test_a_run_whose_registry_is_down_stays_in_the_store(tmp_path: Path, monkeypatch) -> None:
    from fixtures.registry import free_port

    from modelpack import track

    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    repo = f"127.0.0.1:{free_port()}/acme/offline-runs"  # nothing listens there
    with track.run(params={"a": 2}, repo=repo, store=store, sample_every=60) as run:
        run.log(1, f1=0.7)
    assert run.saved is not None and run.saved.pushed_to is None and run.saved.push_error
    with Targets(store_path=store) as targets:
        [kept] = api.runs_ls(targets, repo, local=True).runs
    assert (kept.id, kept.status, dict(kept.metrics)) == (run.id, "finished", {"f1": 0.7})


def test_no_row_is_lost_while_the_writer_drains_the_buffer(tmp_path: Path) -> None:
    from modelpack.runs import live

    run = live.begin(tmp_path / "store", experiment="x", params={}, tags=(), cwd=tmp_path, environ={},
                     command=("t",), flush_every=0.0005, sample_every=3600)  # fmt: skip
    for step in range(50_000):
        run.log(step, {"loss": step / 2})
    done = run.finish("finished", None)
    assert done.record.steps == 50_000 and done.curves is not None and len(done.curves.rows) == 50_000
    assert done.record.metrics == {"loss": 49_999 / 2}
