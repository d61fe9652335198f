"""How runs look to people: the listing table, one run, and an N-way comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelpack.cli import _output

if TYPE_CHECKING:
    from modelpack.api._runs import RunsDiffResult, RunShowResult, RunsLsResult, RunsPruneResult

MAX_PARAM_COLUMNS = 6


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def listing(result: RunsLsResult) -> None:
    runs = result.runs
    if not runs:
        _output.info(f"no run of {result.total} in {result.experiment} matches")
        return
    metrics = sorted({m for s in runs for m in s.metrics})
    if result.sort in metrics:
        metrics.remove(result.sort)
        metrics.insert(0, result.sort)
    # params that vary among the shown runs say what the runs were; constant ones are noise here
    keys = sorted({k for s in runs for k in s.params})
    varying = [k for k in keys if len({repr(s.params.get(k)) for s in runs}) > 1][:MAX_PARAM_COLUMNS]
    columns = ["ID", "STATUS", "STARTED", "DURATION", *metrics, *varying, "TAGS"]
    rows = [
        [s.id, s.status, s.started[:19].replace("T", " "), _num(s.duration),
         *(_num(s.metrics.get(m)) for m in metrics), *(_num(s.params.get(k)) for k in varying),
         ",".join(s.tags)]
        for s in runs
    ]  # fmt: skip
    _output.table(columns, rows)
    if len(runs) < result.total:
        _output.info(f"{len(runs)} of {_output.count(result.total, 'run')} in {result.experiment}")


def one(result: RunShowResult) -> None:
    r = result.record
    _output.echo(f"run        {r.id}  ({result.reference})")
    _output.echo(
        f"status     {r.status}" + (f": {r.failure.type} {r.failure.message}".rstrip() if r.failure else "")
    )
    _output.echo(f"started    {r.started}  ended {r.ended or '-'}  duration {_num(r.duration)} s")
    _output.echo(f"command    {' '.join(r.command)}")
    if r.git:
        _output.echo(
            f"git        {r.git.commit[:12]}{' (dirty)' if r.git.dirty else ''} {r.git.branch or ''}".rstrip()
        )
    h = r.host
    gpus = ", ".join(g.name for g in h.gpus) or f"none ({h.gpu_probe})"
    memory = f"{h.memory_bytes / 2**30:.1f} GiB" if h.memory_bytes else "-"
    _output.echo(f"host       {h.hostname}: {h.cpu_model or '-'} x{h.cpu_count or '-'}, {memory}; GPU {gpus}")
    if r.tags:
        _output.echo(f"tags       {', '.join(r.tags)}")
    for d in r.datasets:
        _output.echo(f"dataset    {d.ref}  {d.digest[:19]}")
    if r.params:
        _output.table(["PARAM", "VALUE"], [[k, _num(v)] for k, v in sorted(_flat(r.params).items())])
    if r.metrics:
        _output.table(["METRIC", "LAST"], [[k, _num(v)] for k, v in sorted(r.metrics.items())])
    for c in r.checkpoints:
        _output.echo(
            f"checkpoint {c.name} step {_num(c.step)} at {c.elapsed:.1f} s: "
            f"{_output.count(len(c.files), 'file')}"
        )
    if r.env:
        _output.echo("env        " + " ".join(f"{k}={v}" for k, v in sorted(r.env.items())))
    _output.echo(f"packages   {len(r.packages)} recorded ({result.digest[:19]})")


def _flat(params: Any) -> dict[str, Any]:
    from modelpack.record.record import flatten

    return flatten(params)


def diff(result: RunsDiffResult) -> None:
    if not result.rows:
        _output.info(f"the {len(result.runs)} runs do not differ")
        return
    _output.table(
        ["", "KEY", *result.runs], [[r.section, r.key, *(_num(v) for v in r.values)] for r in result.rows]
    )


def pruned(result: RunsPruneResult) -> None:
    rows = [[d.id, d.status, "keep" if d.keep else "drop", "; ".join(d.reasons)] for d in result.decisions]
    _output.table(["RUN", "STATUS", "ACTION", "WHY"], rows)
    drop = sum(1 for d in result.decisions if not d.keep)
    if result.dry_run:
        _output.info(f"dry run: {_output.count(drop, 'run')} would be dropped")
    else:
        _output.info(f"{_output.count(len(result.deleted), 'run')} dropped from {result.experiment}")
