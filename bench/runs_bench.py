"""Experiment runs at scale (issue 27 item 9), beside MLflow in the same run.

    .venv/bin/python bench/runs_bench.py            # 10,000 runs (seeding takes a few minutes)
    .venv/bin/python bench/runs_bench.py --quick    # 1,000 runs (what bench/all runs)

Measured against a throwaway loopback registry (distribution, this script's child):
- `modelpack runs ls REPO --sort f1 --where 'alpha<0.001' --where tag=sweep --limit 10 --json` as a
  command: cold (a fresh store) <= 5 s, warm (run again) <= 0.5 s; the library call beside it;
- `run.log(step, loss=..., f1=...)` <= 20 us a call (100,000 calls);
- a 1,000-step, 10-metric run ended and pushed (into the repository already holding N runs) <= 1 s.
Peer: MLflow (mlflow-skinny, its file store: SQLite needs the full mlflow) logging the same N runs
(create_run + log_batch + set_terminated), then `search_runs` for the 10 best by f1 with a metric and tag
filter, cold (a fresh process) and warm (the same process again). MLflow compares params as text, so its
filter cannot say alpha < 0.001: it filters on the metric and the tag only.

Seeding pushes every run's blobs, manifest and tag (8 threads), then writes the 16 listing shards once,
the state N single pushes leave; the timed push goes through the normal path (its shard read, extended,
written back, read again).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import emit
from rollback_bench import Registry

from modelpack import track
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index
from modelpack.oci.target import RawManifest
from modelpack.runs.artifact import put, run_manifest, run_tag, write_blobs
from modelpack.runs.listing import shard_tag
from modelpack.runs.live import iso
from modelpack.runs.record import FINISHED, Host, RunRecord
from modelpack.targets import Targets

ROOT = Path(__file__).resolve().parent.parent
MODELPACK = Path(sys.executable).parent / "modelpack"
WHERE = ["--where", "alpha<0.001", "--where", "tag=sweep", "--sort", "f1", "--limit", "10"]


def fake_run(i: int, rng: random.Random) -> RunRecord:
    alpha = rng.choice([1e-5, 1e-4, 1e-3, 1e-2])
    started = 1_790_000_000 + i * 7
    tags = ("sweep",) if i % 2 == 0 else ("baseline",)
    return RunRecord(
        id=f"bench{i:06d}",
        experiment="bench",
        status=FINISHED,
        started=iso(started),
        ended=iso(started + 60),
        duration=60.0,
        command=("python", "train.py"),
        git=None,
        host=Host("bench", "Linux", "3.11", "cpu", 2, 1 << 34, (), "bench"),
        env={},
        packages={"scikit-learn": "1.9.1"},
        params={"alpha": alpha, "max_iter": rng.choice([100, 200, 400]), "penalty": rng.choice(["l1", "l2"])},
        tags=tags,
        metrics={"f1": rng.random(), "loss": rng.random(), "accuracy": rng.random()},
        steps=0,
    )


def seed(target, n: int) -> None:
    rng = random.Random(7)
    records = [fake_run(i, rng) for i in range(n)]
    shards: dict[str, list] = defaultdict(list)

    def one(r: RunRecord) -> None:
        manifest, blobs = run_manifest(r, None, None)
        write_blobs(target, blobs)
        put(target, manifest, run_tag(r.id))
        desc = manifest.descriptor(artifact_type=mt.RUN_ARTIFACT, annotations=dict(manifest.annotations))
        shards[shard_tag(r.id)].append((r.id, desc))

    done = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(one, records):
            done += 1
            if done % 1000 == 0:
                print(f"  seeded {done}/{n}", file=sys.stderr, flush=True)
    for tag, entries in shards.items():
        index = Index(
            manifests=tuple(d for _, d in sorted(entries, key=lambda e: e[0])), artifact_type=mt.RUN_LISTING
        )
        raw = canonical.dumps(index.to_json())
        target.put_manifest(tag, RawManifest(raw, mt.OCI_INDEX, digests.of_bytes(raw)))


def cli_ls(repo: str, store: Path) -> tuple[float, list[dict]]:
    env = {**os.environ, "MODELPACK_STORE": str(store)}
    t = time.perf_counter()
    out = subprocess.run([str(MODELPACK), "runs", "ls", repo, *WHERE, "--json"], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return time.perf_counter() - t, json.loads(out.stdout)["runs"]


def log_cost(store: Path) -> float:
    calls = 100_000
    with track.run(params={"bench": 1}, repo="bench-log-runs", store=store, sample_every=3600) as run:
        t = time.perf_counter()
        for i in range(calls):
            run.log(i, loss=0.5, f1=0.9)
        per = (time.perf_counter() - t) / calls
    return per


def push_cost(repo: str, store: Path) -> float:
    with track.run(params={"alpha": 1e-4}, tags=["sweep"], repo=repo, store=store, sample_every=3600) as run:
        for step in range(1000):
            run.log(step, **{f"m{k}": step * 0.001 + k for k in range(10)})
        t = time.perf_counter()
    # the block's end: the last flush, the record, the store, the push and the shard update
    elapsed = time.perf_counter() - t
    assert run.saved is not None and run.saved.pushed_to, run.saved
    return elapsed


MLFLOW_LOG = """
import random, sys, time
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
c = MlflowClient(sys.argv[1]); n = int(sys.argv[2]); rng = random.Random(7)
exp = c.create_experiment("bench")
t = time.perf_counter()
for i in range(n):
    r = c.create_run(exp)
    now = int(time.time() * 1000)
    alpha = rng.choice([1e-5, 1e-4, 1e-3, 1e-2])
    c.log_batch(r.info.run_id,
        metrics=[Metric(k, rng.random(), now, 0) for k in ("f1", "loss", "accuracy")],
        params=[Param("alpha", str(alpha)), Param("max_iter", str(rng.choice([100, 200, 400]))),
                Param("penalty", rng.choice(["l1", "l2"]))],
        tags=[RunTag("sweep" if i % 2 == 0 else "baseline", "true")])
    c.set_terminated(r.info.run_id)
print(time.perf_counter() - t)
"""
MLFLOW_QUERY = """
import sys, time
t0 = time.perf_counter()
from mlflow.tracking import MlflowClient
c = MlflowClient(sys.argv[1])
def q():
    exp = c.get_experiment_by_name("bench")
    return c.search_runs([exp.experiment_id], filter_string="metrics.f1 > 0 and tags.sweep = 'true'",
                         order_by=["metrics.f1 DESC"], max_results=10)
runs = q(); cold = time.perf_counter() - t0
t = time.perf_counter(); q(); warm = time.perf_counter() - t
print(cold, warm, len(runs))
"""


def mlflow_peer(n: int, work: Path) -> tuple[float, float, float] | None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        print("mlflow not installed: no peer", file=sys.stderr)
        return None
    uri = (work / "mlruns").as_uri()
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    logged = subprocess.run([sys.executable, "-c", MLFLOW_LOG, uri, str(n)], env=env, capture_output=True,
                            text=True, check=True)  # fmt: skip
    per_run = float(logged.stdout.split()[-1]) / n
    out = subprocess.run([sys.executable, "-c", MLFLOW_QUERY, uri], env=env, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    return per_run, float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1,000 runs (what bench/all runs)")
    ap.add_argument("--runs", type=int, default=None, help="how many runs (default 10,000; --quick 1,000)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--repo", help="HOST/REPO already holding the runs (an earlier seeding): none now")
    args = ap.parse_args()
    n = args.runs or (1000 if args.quick else 10_000)
    with tempfile.TemporaryDirectory(prefix="runs-bench-") as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        registry = Registry(work / "registry")
        try:
            repo = args.repo or f"{registry.host}/bench/runs"
            if not args.repo:
                with Targets(store_path=work / "seed-store") as targets:
                    target = targets.open(repo, must_exist=False).target
                    t = time.perf_counter()
                    seed(target, n)
                    print(f"  seeded {n} runs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            cold, found = cli_ls(repo, work / "cold-store")
            warm, again = cli_ls(repo, work / "cold-store")
            assert found == again and len(found) == 10, found
            assert all(r["params"]["alpha"] < 0.001 and "sweep" in r["tags"] for r in found)
            from modelpack import api

            lib = []
            for _ in range(2):  # a fresh store, then its listing cache
                with Targets(store_path=work / "lib-store") as targets:
                    t = time.perf_counter()
                    api.runs_ls(targets, repo, where=WHERE[1:4:2], sort="f1", limit=10)
                    lib.append(time.perf_counter() - t)
            per_log = log_cost(work / "log-store")
            pushed = push_cost(repo, work / "push-store")
            peer = None if args.no_peer else mlflow_peer(n, work)
        finally:
            registry.stop()
    label = f"{n:,} runs"
    emit(f"runs ls --sort f1 --where x2, {label}, cold command (peer: MLflow search_runs, new process)", cold,
         5.0, peer[1] if peer else None)  # fmt: skip
    emit(f"runs ls --sort f1 --where x2, {label}, warm command (peer: MLflow search_runs again)", warm, 0.5,
         peer[2] if peer else None)  # fmt: skip
    emit(f"runs ls --sort f1 --where x2, {label}, library call, cold", lib[0])
    emit(f"runs ls --sort f1 --where x2, {label}, library call, warm", lib[1])
    emit("run.log, per call (100,000 calls)", per_log, 20e-6)
    emit(f"1,000-step 10-metric run ended and pushed, repository of {label}", pushed, 1.0)
    if peer:
        emit(f"MLflow log one run (create_run + log_batch + set_terminated), {label}", peer[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
