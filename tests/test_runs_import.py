"""`runs import --mlflow`: a tracking store the real mlflow library wrote, imported as modelpack runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.clirun import run_cli

from modelpack import api
from modelpack.targets import Targets

WRITE = """
import sys
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("iris")
for alpha, fail in ((1e-4, False), (0.01, False), (1e-3, True)):
    run = mlflow.start_run(run_name=f"alpha-{alpha}")
    mlflow.log_param("alpha", alpha)
    mlflow.log_param("solver", "sgd")
    mlflow.set_tag("team", "vision")
    for step in range(3):
        mlflow.log_metric("f1", 0.5 + step / 10 + alpha, step=step)
    mlflow.end_run(status="FAILED" if fail else "FINISHED")
"""


def test_an_mlflow_file_store_imports_with_typed_params_and_curves(registry, tmp_path: Path) -> None:
    mlruns = tmp_path / "mlruns"
    env = {"MLFLOW_ALLOW_FILE_STORE": "true"}
    wrote = subprocess.run([sys.executable, "-c", WRITE, mlruns.as_uri()], capture_output=True, text=True,
                           timeout=300, check=False, env={**os.environ, **env})  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    repo = f"{registry.host}/acme/mlflow-runs"
    store = {"MODELPACK_STORE": str(tmp_path / "store")}
    done = run_cli("runs", "import", repo, "--mlflow", str(mlruns), "--json", env=store)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["imported"]) == 3 and result["statuses"] == {"failed": 1, "finished": 2}

    with Targets(store_path=tmp_path / "fresh") as targets:
        low = api.runs_ls(targets, repo, where=["alpha<0.001"]).runs
        assert [s.params["alpha"] for s in low] == [0.0001]  # MLflow's text "0.0001", typed
        assert {s.id for s in api.runs_ls(targets, repo, where=["tag=team=vision"]).runs} == set(
            result["imported"]
        )
        failed = api.runs_ls(targets, repo, status=["failed"]).runs
        assert [s.params["alpha"] for s in failed] == [0.001]
        shown = api.runs_show(targets, f"{repo}:{low[0].id}", curves=True)
    r = shown.record
    assert r.metrics == {"f1": 0.5 + 0.2 + 1e-4} and r.steps == 3
    assert shown.curves is not None and [row[0] for row in shown.curves["rows"]] == [0, 1, 2]
    assert r.host.gpus == () and "MLflow" in r.host.gpu_probe and r.packages == {}
    assert r.duration is not None and r.duration >= 0

    again = run_cli("runs", "import", repo, "--mlflow", str(mlruns), "--json", env=store)
    assert json.loads(again.stdout)["imported"] == result["imported"]
    with Targets(store_path=tmp_path / "fresh2") as targets:
        assert api.runs_ls(targets, repo).total == 3  # the same bytes again: nothing new
