"""Runs from an MLflow tracking store, read with the `mlflow` library itself (`runs import --mlflow`).

Each MLflow run becomes a run record: its status, start and end, params (MLflow keeps them as text; here
they are typed, so `alpha<0.001` works on them), last metrics and every metric's history as curves,
user tags (as `key=value`), the git commit and source it names. What MLflow never recorded (the host, the
packages) is recorded as absent with a note, never guessed. The id is `mlflow-<run id>`: importing again
gives the same bytes, so a run already there is left as it is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelpack.errors import InputError, UsageError
from modelpack.record.git import GitInfo
from modelpack.record.where import value as typed
from modelpack.runs.live import Finished, curves_of
from modelpack.runs.record import FAILED, FINISHED, KILLED, RUNNING, Failure, Host, RunRecord

STATUS = {"FINISHED": FINISHED, "FAILED": FAILED, "KILLED": KILLED, "RUNNING": RUNNING, "SCHEDULED": RUNNING}
PAGE = 1000


def _uri(text: str) -> str:
    """A path to an `mlruns` folder, or a tracking URI (file:, sqlite:, http(s): a server mlflow reads)."""
    if "://" in text or text.startswith(("sqlite:", "file:")):
        return text
    path = Path(text).expanduser()
    if not path.is_dir():
        raise InputError(
            f"{text} is not an MLflow store folder", hint="name the mlruns folder or a tracking URI"
        )
    return path.resolve().as_uri()


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_mlflow(source: str, experiment: str, *, only: str | None = None) -> Iterator[Finished]:
    """Every run of the store (or of the MLflow experiment named `only`), as a finished run to save."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError(
            "runs import --mlflow needs the mlflow library", hint="pip install mlflow-skinny"
        ) from None
    uri = _uri(source)
    if uri.startswith("file:"):
        # mlflow 3 refuses its file store unless asked; reading one is what this command is for
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    experiments = [e for e in client.search_experiments() if only is None or e.name == only]
    if only is not None and not experiments:
        raise InputError(f"no MLflow experiment {only!r} in {source}")
    for exp in experiments:
        token = None
        while True:
            page = client.search_runs([exp.experiment_id], max_results=PAGE, page_token=token)
            for run in page:
                yield _finished(client, run, exp.name, experiment, uri)
            token = page.token
            if not token:
                break


def _finished(client: Any, run: Any, mlflow_experiment: str, experiment: str, uri: str) -> Finished:
    info, data = run.info, run.data
    tags = dict(data.tags)
    columns: dict[int, dict[str, float]] = {}
    for key in sorted(data.metrics):
        for m in client.get_metric_history(info.run_id, key):
            columns.setdefault(int(m.step), {})[key] = float(m.value)
    rows = sorted(columns.items())
    status = STATUS.get(str(info.status), FAILED)
    commit = tags.get("mlflow.source.git.commit")
    started, ended = _iso(info.start_time), _iso(info.end_time)
    record = RunRecord(
        id=f"mlflow-{info.run_id}",
        experiment=experiment,
        status=status,
        started=started or "1970-01-01T00:00:00.000Z",
        ended=ended,
        duration=(info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None,
        command=tuple(c for c in (tags.get("mlflow.source.name"),) if c),
        git=GitInfo(
            commit, tags.get("mlflow.source.git.branch"), tags.get("mlflow.source.git.repoURL"), False
        )
        if commit
        else None,
        host=Host("", "", "", None, None, None, (), "not recorded: imported from MLflow"),
        env={},
        packages={},
        params={k: typed(v) for k, v in sorted(data.params.items())},
        tags=tuple(sorted(f"{k}={v}" if v else k for k, v in tags.items() if not k.startswith("mlflow."))),
        metrics={k: float(v) for k, v in sorted(data.metrics.items())},
        steps=len(rows),
        failure=Failure("imported", str(info.status)) if status in (FAILED, KILLED) else None,
        notes=(
            f"imported from MLflow {uri}, experiment {mlflow_experiment!r}, run {info.run_id}"
            + (f" ({tags['mlflow.runName']})" if tags.get("mlflow.runName") else ""),
            "host, GPUs, environment and packages were not recorded by MLflow",
        ),
    )
    return Finished(record, curves_of(rows), None, (), Path(tempfile.mkdtemp(prefix="modelpack-import-")))
