"""`run -- CMD`, `runs ls | show | diff | push`: experiment runs (modelpack/runs), recorded and queried.

An experiment is a repository (`HOST/REPO` in a registry, a bare `NAME` in the local store); each run is an
artifact tagged `run-<id>` in it. `runs ls` reads the tag list and the listing shards (runs/listing.py), not
one manifest per run; `show` and `diff` read the named runs' records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelpack.errors import NotFoundError, UsageError
from modelpack.record.record import flatten
from modelpack.runs.artifact import RunView, load_run, read_curves, read_system, run_tag
from modelpack.runs.record import RunRecord, Summary
from modelpack.targets import Location, Targets

__all__ = [
    "RunResult",
    "RunShowResult",
    "RunsDiffResult",
    "RunsImportResult",
    "RunsLsResult",
    "RunsPruneResult",
    "RunsPushResult",
    "run_command",
    "runs_diff",
    "runs_import",
    "runs_ls",
    "runs_prune",
    "runs_push",
    "runs_show",
]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    returncode: int
    experiment: str
    digest: str
    pushed_to: str | None
    push_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "status": self.status,
            "returncode": self.returncode,
            "experiment": self.experiment,
            "digest": self.digest,
            "pushedTo": self.pushed_to,
            "pushError": self.push_error,
        }


def run_command(
    targets: Targets,
    argv: Sequence[str],
    *,
    experiment: str | None = None,
    tags: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    sample_every: float = 10.0,
) -> RunResult:
    """Runs `argv` as a recorded run (runs/wrap.py) and stores it; the result carries the command's exit
    status for the CLI to exit with."""
    from modelpack.runs.save import TRACKING_REPO_ENV, default_experiment, save
    from modelpack.runs.wrap import run_wrapped

    where = cwd or Path.cwd()
    name = experiment or targets.environ.get(TRACKING_REPO_ENV) or default_experiment(where)
    targets.open(name, must_exist=False)  # a malformed name fails before the command runs
    targets.store.ensure()
    wrapped = run_wrapped(
        argv,
        targets.store_path,
        experiment=name,
        tags=tags,
        params=params or {},
        cwd=where,
        environ=targets.environ,
        sample_every=sample_every,
    )
    saved = save(targets, wrapped.finished, name)
    r = wrapped.finished.record
    return RunResult(
        r.id, r.status, wrapped.returncode, saved.local, saved.digest, saved.pushed_to, saved.push_error
    )


@dataclass(frozen=True)
class RunsLsResult:
    experiment: str
    runs: tuple[Summary, ...]
    total: int  # runs in the experiment before filtering
    sort: str | None
    notes: tuple[str, ...]
    requests: int

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "total": self.total,
            "sort": self.sort,
            "notes": list(self.notes),
            "runs": [{**s.to_json(), "digest": s.digest} for s in self.runs],
        }


def runs_ls(
    targets: Targets,
    experiment: str,
    *,
    where: Sequence[str] = (),
    status: Sequence[str] = (),
    since: str | None = None,
    until: str | None = None,
    sort: str | None = None,
    asc: bool = False,
    limit: int | None = None,
    local: bool = False,
    now: datetime | None = None,
) -> RunsLsResult:
    """The experiment's runs, filtered (`where` in record/where.py's language, statuses, start times) and
    ordered by a metric (best first unless `asc`), newest first otherwise."""
    from modelpack.api._read import parse_where
    from modelpack.runs import query
    from modelpack.runs.listing import ShardCache, list_runs

    conditions = parse_where(targets, where)
    place = _experiment(targets, experiment, local)
    listing = list_runs(place.target, cache=ShardCache(targets.store_path / "cache" / "runs"))
    clock = now or datetime.now(UTC)
    q = query.Query(
        tuple(conditions),
        query.check_statuses(status),
        query.parse_time(since, clock) if since else None,
        query.parse_time(until, clock) if until else None,
        sort,
        asc,
        limit,
    )
    q, notes = query.resolve(q, listing.runs)
    kept = query.select(q, listing.runs)
    return RunsLsResult(
        place.repository, tuple(kept), len(listing.runs), sort, tuple(notes), listing.requests
    )


@dataclass(frozen=True)
class RunShowResult:
    reference: str
    digest: str
    record: RunRecord
    curves: Mapping[str, Any] | None
    layers: int
    system: Mapping[str, Any] | None = None  # sampled CPU, RSS, GPU: {"x": "seconds", "columns", "rows"}

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "record": self.record.to_json(),
            "curves": self.curves,
            "system": self.system,
            "layers": self.layers,
        }


def runs_show(
    targets: Targets, reference: str, *, curves: bool = False, local: bool = False
) -> RunShowResult:
    """One run's record (`REPO:run-<id>`, or `REPO:<id>`), with its per-step curves and system samples
    when asked."""
    place, view = open_run(targets, reference, local)
    c = read_curves(place.target, view) if curves else None
    system = read_system(place.target, view) if curves else None
    return RunShowResult(
        place.display, view.digest, view.record, c.to_json() if c else None, len(view.manifest.layers), system
    )


@dataclass(frozen=True)
class DiffRow:
    section: str  # params, metrics, tags, datasets, git, host, packages, status
    key: str
    values: tuple[Any, ...]  # one per run, None where a run lacks it

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "key": self.key, "values": list(self.values)}


@dataclass(frozen=True)
class RunsDiffResult:
    runs: tuple[str, ...]
    rows: tuple[DiffRow, ...]  # only what differs, unless all were asked for

    def to_json(self) -> dict[str, Any]:
        return {"runs": list(self.runs), "rows": [r.to_json() for r in self.rows]}


def runs_diff(
    targets: Targets, references: Sequence[str], *, all_rows: bool = False, local: bool = False
) -> RunsDiffResult:
    """N runs side by side: params, final metrics, tags, datasets, commit, status, host and packages;
    only the rows that differ unless `all_rows`."""
    if len(references) < 2:
        raise UsageError("runs diff compares two runs or more", hint="modelpack runs diff REPO:ID1 REPO:ID2")
    records = [open_run(targets, r, local)[1].record for r in references]
    sections: list[tuple[str, list[Mapping[str, Any]]]] = [
        (
            "run",
            [
                {
                    "status": r.status,
                    "started": r.started,
                    "duration": r.duration,
                    "commit": r.git.commit if r.git else None,
                    "dirty": r.git.dirty if r.git else None,
                }
                for r in records
            ],
        ),
        ("params", [flatten(r.params) for r in records]),
        ("metrics", [dict(r.metrics) for r in records]),
        ("tags", [dict.fromkeys(r.tags, True) for r in records]),
        ("datasets", [{d.ref: d.digest for d in r.datasets} for r in records]),
        (
            "host",
            [
                {
                    "cpu": r.host.cpu_model,
                    "cpus": r.host.cpu_count,
                    "memory": r.host.memory_bytes,
                    "gpus": ", ".join(g.name for g in r.host.gpus) or None,
                }
                for r in records
            ],
        ),
        ("packages", [dict(r.packages) for r in records]),
    ]
    rows = []
    for section, maps in sections:
        for key in sorted({k for m in maps for k in m}):
            values = tuple(m.get(key) for m in maps)
            if all_rows or len({repr(v) for v in values}) > 1:
                rows.append(DiffRow(section, key, values))
    return RunsDiffResult(tuple(r.id for r in records), tuple(rows))


@dataclass(frozen=True)
class RunsPushResult:
    source: str
    destination: str
    pushed: tuple[str, ...]
    already: int

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "pushed": list(self.pushed),
            "already": self.already,
        }


def runs_push(targets: Targets, experiment: str) -> RunsPushResult:
    """Sends the runs the store holds for the registry experiment `HOST/REPO` that the registry lacks (a
    run recorded offline, or whose push failed)."""
    from modelpack.runs.save import local_of, push_missing

    place = targets.open(experiment, must_exist=False)
    if place.kind == "store":
        raise UsageError(
            f"{experiment!r} has no registry host: runs push sends to a registry",
            hint="e.g. modelpack runs push 127.0.0.1:5000/acme/iris-runs",
        )
    local = local_of(targets, place)
    result = push_missing(local, place.target)
    return RunsPushResult(local.describe(), place.repository, result.pushed, result.already)


@dataclass(frozen=True)
class RunsImportResult:
    source: str
    experiment: str
    imported: tuple[str, ...]
    statuses: Mapping[str, int]
    push_errors: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "experiment": self.experiment, "imported": list(self.imported),
                "statuses": dict(self.statuses), "pushErrors": list(self.push_errors)}  # fmt: skip


def runs_import(
    targets: Targets,
    experiment: str,
    *,
    mlflow: str | None = None,
    mlflow_experiment: str | None = None,
    tensorboard: Path | None = None,
) -> RunsImportResult:
    """Every run of an MLflow tracking store (a folder or a tracking URI, read with the mlflow library:
    runs/mlflow_import.py) or of a TensorBoard log directory (tensorboard's reader:
    runs/tensorboard_import.py), saved into `experiment` as modelpack runs."""
    from modelpack.runs.mlflow_import import read_mlflow
    from modelpack.runs.save import save
    from modelpack.runs.tensorboard_import import read_tensorboard

    if (mlflow is None) == (tensorboard is None):
        raise UsageError("name one source: --mlflow PATH_OR_URI or --tensorboard LOGDIR")

    place = targets.open(experiment, must_exist=False)
    if place.ref is not None:
        raise UsageError(f"{experiment!r}: an experiment is a repository; drop the tag")
    targets.store.ensure()
    ids: list[str] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    found = (
        read_mlflow(mlflow, experiment, only=mlflow_experiment)
        if mlflow is not None
        else read_tensorboard(tensorboard, experiment)  # type: ignore[arg-type]
    )
    for finished in found:
        saved = save(targets, finished, experiment)
        ids.append(saved.run_id)
        statuses[finished.record.status] = statuses.get(finished.record.status, 0) + 1
        if saved.push_error:
            errors.append(f"{saved.run_id}: {saved.push_error}")
    source = mlflow if mlflow is not None else str(tensorboard)
    return RunsImportResult(source, place.repository, tuple(ids), statuses, tuple(errors))


@dataclass(frozen=True)
class RunsPruneResult:
    experiment: str
    decisions: tuple[Any, ...]  # runs.prune.RunDecision
    deleted: tuple[str, ...]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "dryRun": self.dry_run, "deleted": list(self.deleted),
                "decisions": [d.to_json() for d in self.decisions]}  # fmt: skip


def runs_prune(
    targets: Targets,
    experiment: str,
    *,
    metric: str | None = None,
    asc: bool = False,
    keep_recent: str | None = None,
    used_by: Sequence[str] = (),
    dry_run: bool = True,
    now: datetime | None = None,
) -> RunsPruneResult:
    """Drops failed, killed and intermediate runs (runs/prune.py keeps the running, the best of each dataset
    version by `metric`, the recent, and every run a release of the `used_by` model repositories came
    from); with `dry_run` only the plan."""
    from modelpack.release.query import read_versions, release_tags
    from modelpack.runs import prune, query
    from modelpack.runs.listing import list_runs

    place = _experiment(targets, experiment, False)
    runs = list_runs(place.target).runs
    if metric is not None and runs and not any(metric in s.metrics for s in runs):
        raise UsageError(f"--metric {metric!r}: no run of {place.repository} records it")
    released: dict[str, str] = {}
    for text in used_by:
        model = targets.open(text)
        for v in read_versions(model.target, release_tags(model.target.list_tags())):
            if v.release is not None and v.release.record.run is not None:
                released[v.release.record.run.id] = model.ref_text(v.tag)
    since = query.parse_time(keep_recent, now or datetime.now(UTC)) if keep_recent else None
    decisions = prune.plan(runs, metric=metric, ascending=asc, released=released, keep_since=since)
    doomed = [d.id for d in decisions if not d.keep]
    deleted = () if dry_run else tuple(prune.drop(place.target, doomed))
    return RunsPruneResult(place.repository, tuple(decisions), deleted, dry_run)


def open_run(targets: Targets, reference: str, local: bool = False) -> tuple[Location, RunView]:
    place = targets.open(reference, local=local)
    ref = place.need_ref("show")
    tag = ref if ref.startswith("run-") or ref.startswith("sha256:") else run_tag(ref)
    try:
        view = load_run(place.target, tag, place.ref_text(tag))
    except NotFoundError:
        raise NotFoundError(
            f"no run {place.ref_text(tag)}", hint=f"see modelpack runs ls {place.repository}"
        ) from None
    return place.with_ref(tag), view


def _experiment(targets: Targets, experiment: str, local: bool) -> Location:
    place = targets.open(experiment, local=local)
    if place.ref is not None:
        raise UsageError(
            f"runs ls takes an experiment repository: drop the tag from {experiment!r}",
            hint=f"modelpack runs ls {place.repository}",
        )
    return place
