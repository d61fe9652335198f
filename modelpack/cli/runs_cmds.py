"""`modelpack run -- CMD` and `modelpack runs ls | show | diff | push`: experiment runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, LocalOpt, access_options
from modelpack.errors import UsageError

runs_app = typer.Typer(
    name="runs",
    help=(
        "Experiment runs, recorded by `modelpack run --` or `from modelpack import track`:"
        " ls, show, diff, push, import, prune."
        "\n\nExamples:\n\n"
        "  modelpack runs ls 127.0.0.1:5000/acme/iris-runs --where 'alpha<0.001' --where tag=sweep"
        " --sort f1\n\n"
        "  modelpack runs diff 127.0.0.1:5000/acme/iris-runs:run-20261206T101500-1a2b3c4d ...:run-..."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(runs_app)

ExperimentOpt = Annotated[
    str | None,
    typer.Option(
        "--experiment",
        "-e",
        metavar="REPO",
        help="The experiment's repository: HOST/REPO (pushed there) or a NAME in the local store. "
        "Default: $MODELPACK_TRACKING_REPO, else <directory>-runs in the store.",
    ),
]


def _params(texts: list[str] | None) -> dict[str, object]:
    from modelpack.record.where import value

    out: dict[str, object] = {}
    for text in texts or ():
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {text!r} is not KEY=VALUE", hint="e.g. --param alpha=1e-4")
        out[key] = value(raw)
    return out


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@access_options
def run(
    command: Annotated[list[str], typer.Argument(metavar="-- CMD...", help="The training command.")],
    experiment: ExperimentOpt = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="Tag the run (repeat).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", metavar="KEY=VALUE", help="A param to record (repeat).")
    ] = None,
    sample_every: Annotated[
        float, typer.Option("--sample-every", metavar="SECONDS", help="System metrics interval.")
    ] = 10.0,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Run a training command as a recorded run; exits with the command's status.

    Records start, end, status (finished, failed with the exit status, killed with the signal), git
    commit and dirty state, host, GPUs, allowed environment variables, packages, params.yaml and
    --param values, and sampled CPU and RSS. A `track.run` inside the command joins this run.

    Examples:

      modelpack run -- python train.py

      modelpack run -e 127.0.0.1:5000/acme/iris-runs --tag sweep --param alpha=1e-4 -- python train.py
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.run_command(
            targets,
            command,
            experiment=experiment,
            tags=tag or (),
            params=_params(param),
            sample_every=sample_every,
        )
    if as_json:
        _output.emit_json(result.to_json())
    else:
        where = result.pushed_to or f"{result.experiment} (local store)"
        _output.info(f"run {result.run_id} {result.status}: {where}")
        if result.push_error:
            _output.info(f"warning: not pushed ({result.push_error}); send it later: modelpack runs push")
    raise typer.Exit(result.returncode)


ExperimentArg = Annotated[
    str, typer.Argument(metavar="REPO", help="The experiment: HOST/REPO or a store NAME.")
]


@runs_app.command("ls")
@access_options
def ls(
    experiment: ExperimentArg,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="COND",
            help="alpha<0.001, param.alpha=1e-4, f1>=0.9, tag=NAME, dataset=REG/REPO:TAG; repeat for all.",
        ),
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", metavar="STATUS", help="running, finished, failed or killed (repeat)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help="Started at or after: 2026-12-01, 2h, 7d.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="TIME", help="Started at or before.")
    ] = None,
    sort: Annotated[
        str | None, typer.Option("--sort", metavar="METRIC", help="Order by this metric, highest first.")
    ] = None,
    asc: Annotated[bool, typer.Option("--asc", help="With --sort: lowest first.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", help="Show the first N.")] = None,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """List an experiment's runs from its listing (no record is read), filtered and sorted.

    Examples:

      modelpack runs ls 127.0.0.1:5000/acme/iris-runs --sort f1 --limit 10

      modelpack runs ls 127.0.0.1:5000/acme/iris-runs --where dataset=127.0.0.1:5000/acme/iris-data:v3 \\
          --where 'alpha<0.001' --where tag=sweep --status finished --since 7d --sort f1
    """
    from modelpack import api
    from modelpack.cli import _render_runs

    with access.targets() as targets:
        result = api.runs_ls(
            targets,
            experiment,
            where=where or (),
            status=status or (),
            since=since,
            until=until,
            sort=sort,
            asc=asc,
            limit=limit,
            local=local,
        )
    if as_json:
        return _output.emit_json(result.to_json())
    for note in result.notes:
        _output.info(f"note: {note}")
    _render_runs.listing(result)


RunArg = Annotated[str, typer.Argument(metavar="RUN", help="REPO:run-<id> (or REPO:<id>).")]


@runs_app.command("show")
@access_options
def show(
    run_ref: RunArg,
    curves: Annotated[bool, typer.Option("--curves", help="With --json: the per-step metrics too.")] = False,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Show one run: status, times, params, metrics, datasets, checkpoints, host, git.

    Examples:

      modelpack runs show 127.0.0.1:5000/acme/iris-runs:run-20261206T101500-1a2b3c4d

      modelpack runs show iris-runs:20261206T101500-1a2b3c4d --json --curves
    """
    from modelpack import api
    from modelpack.cli import _render_runs

    with access.targets() as targets:
        result = api.runs_show(targets, run_ref, curves=curves, local=local)
    if as_json:
        return _output.emit_json(result.to_json())
    _render_runs.one(result)


@runs_app.command("diff")
@access_options
def diff(
    run_refs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Two runs or more.")],
    all_rows: Annotated[bool, typer.Option("--all", help="Every row, not only those that differ.")] = False,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Compare runs side by side: params, metrics, tags, datasets, commit, host, packages.

    Examples:

      modelpack runs diff iris-runs:20261206T101500-1a2b3c4d iris-runs:20261206T102000-5e6f7a8b
    """
    from modelpack import api
    from modelpack.cli import _render_runs

    with access.targets() as targets:
        result = api.runs_diff(targets, run_refs, all_rows=all_rows, local=local)
    if as_json:
        return _output.emit_json(result.to_json())
    _render_runs.diff(result)


@runs_app.command("push")
@access_options
def push(
    experiment: ExperimentArg,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Send the runs the local store holds for a registry experiment that the registry lacks.

    Examples:

      modelpack runs push 127.0.0.1:5000/acme/iris-runs
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.runs_push(targets, experiment)
    if as_json:
        return _output.emit_json(result.to_json())
    _output.info(
        f"{_output.count(len(result.pushed), 'run')} pushed to {result.destination} "
        f"({result.already} already there)"
    )


@runs_app.command("import")
@access_options
def import_(
    experiment: ExperimentArg,
    mlflow: Annotated[
        str | None,
        typer.Option("--mlflow", metavar="PATH_OR_URI", help="An mlruns folder or an MLflow tracking URI."),
    ] = None,
    tensorboard: Annotated[
        Path | None,
        typer.Option("--tensorboard", metavar="LOGDIR", help="A TensorBoard logdir: a run per folder."),
    ] = None,
    mlflow_experiment: Annotated[
        str | None,
        typer.Option("--mlflow-experiment", metavar="NAME", help="Only this MLflow experiment's runs."),
    ] = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Import runs from an MLflow tracking store or TensorBoard event files into an experiment.

    MLflow (read with the mlflow library): params become typed (MLflow keeps text), metric histories
    curves, user tags `key=value`. TensorBoard (its own reader): each folder with event files is a run,
    its scalars the curves. What the source never recorded (host, packages) is recorded as absent.
    Importing again changes nothing.

    Examples:

      modelpack runs import 127.0.0.1:5000/acme/iris-runs --mlflow ./mlruns

      modelpack runs import iris-runs --tensorboard ./logs

      modelpack runs import iris-runs --mlflow sqlite:///mlflow.db --mlflow-experiment iris
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.runs_import(
            targets, experiment, mlflow=mlflow, mlflow_experiment=mlflow_experiment, tensorboard=tensorboard
        )
    if as_json:
        return _output.emit_json(result.to_json())
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.statuses.items()))
    _output.info(f"{_output.count(len(result.imported), 'run')} imported into {result.experiment} ({counts})")
    for error in result.push_errors:
        _output.info(f"warning: not pushed: {error}")


@runs_app.command("prune")
@access_options
def prune(
    experiment: ExperimentArg,
    metric: Annotated[
        str | None,
        typer.Option("--metric", metavar="METRIC", help="Keep each dataset version's best run by it."),
    ] = None,
    asc: Annotated[bool, typer.Option("--asc", help="With --metric: lower is better.")] = False,
    keep_recent: Annotated[
        str | None, typer.Option("--keep-recent", metavar="AGE", help="Keep runs started within it: 7d, 12h.")
    ] = None,
    used_by: Annotated[
        list[str] | None,
        typer.Option("--used-by", metavar="REPO", help="A model repository whose releases keep their runs."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Drop failed, killed and intermediate runs.

    Keeps running runs, each dataset version's best run by --metric, runs started within --keep-recent,
    and every run a release of the --used-by repositories was built from. Without a terminal, or with
    --json, it is a dry run unless --yes.

    Examples:

      modelpack runs prune ghcr.io/acme/iris-runs --metric f1 --used-by ghcr.io/acme/iris --dry-run

      modelpack runs prune iris-runs --metric loss --asc --keep-recent 7d --yes
    """
    import sys

    from modelpack import api
    from modelpack.cli import _render_runs

    preview = dry_run or (not yes and (as_json or not sys.stdin.isatty()))
    with access.targets() as targets:
        plan = api.runs_prune(
            targets, experiment, metric=metric, asc=asc, keep_recent=keep_recent, used_by=used_by or (),
            dry_run=True,
        )  # fmt: skip
        doomed = [d for d in plan.decisions if not d.keep]
        result = plan
        if doomed and not preview:
            if not yes:
                _render_runs.pruned(plan)
                if not typer.confirm(f"delete {_output.count(len(doomed), 'run')}?", default=False):
                    raise typer.Exit(1)
            result = api.runs_prune(
                targets, experiment, metric=metric, asc=asc, keep_recent=keep_recent, used_by=used_by or (),
                dry_run=False,
            )  # fmt: skip
    if as_json:
        return _output.emit_json(result.to_json())
    _render_runs.pruned(result)
