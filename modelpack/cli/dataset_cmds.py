"""`modelpack dataset push | pull | inspect | ls | diff | used-by`: published datasets (a typer group)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, access_options

if TYPE_CHECKING:
    from collections.abc import Mapping

    from modelpack.record.dataset import DatasetRecord

dataset_app = typer.Typer(
    name="dataset",
    help=(
        "Datasets as artifacts of their own: push, pull, inspect, ls, diff, used-by.\n\n"
        "Examples:\n\n"
        "  modelpack dataset push data/iris ghcr.io/acme/iris-data:v3 --label species\n\n"
        "  modelpack dataset used-by ghcr.io/acme/iris-data:v3 ghcr.io/acme/iris"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(dataset_app)

RefArg = Annotated[str, typer.Argument(metavar="REF", help="The dataset: HOST/REPO:VERSION or oci:PATH:TAG.")]


@dataset_app.command("push")
@access_options
def push(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="The file or directory to publish.")],
    destination: Annotated[str, typer.Argument(metavar="DEST", help="HOST/REPO:VERSION or oci:PATH:TAG.")],
    label: Annotated[
        str | None,
        typer.Option("--label", metavar="COLUMN", help="Record the class distribution of this column."),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", metavar="URI", help="Where the data came from (recorded).")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", metavar="TEXT", help="A line about the dataset.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a version tag (recorded).")] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Publish a file or directory as a dataset artifact; prints its digest.

    Large files are a layer each, small files grouped; only layers the registry lacks are sent, so a
    version that changes one file uploads that file. Records every file's sha256, sizes, rows and columns
    of CSV/TSV/JSONL/Parquet, the --label class distribution, the git commit, who and when.

    Examples:

      modelpack dataset push data/iris ghcr.io/acme/iris-data:v3 --label species

      modelpack dataset push train.csv 127.0.0.1:5000/acme/train:v1 --source s3://bucket/train.csv
    """
    from modelpack import api

    with access.targets() as targets, _output.progress_bars() as progress:
        result = api.dataset_push(
            targets, path, destination, label=label, source=source, description=description, force=force,
            progress=progress,
        )  # fmt: skip
    if as_json:
        return _output.emit_json(result.to_json())
    for note in result.to_json()["notes"]:
        _output.info(f"note: {note}")
    c = result.copy
    _output.info(
        f"pushed {result.source} to {result.destination}: {_output.count(c.blobs_copied, 'blob')} sent "
        f"({c.bytes_copied:,} bytes), {c.blobs_skipped} already there"
    )
    _output.echo(result.digest)


@dataset_app.command("pull")
@access_options
def pull(
    reference: RefArg,
    dest: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to write the files into.")],
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter", metavar="GLOB", help="Only files whose path or name matches, e.g. 'train/*'."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist in DIR.")] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Write a dataset's files into DIR, every layer digest and file sha256 verified before any moves in.

    Examples:

      modelpack dataset pull ghcr.io/acme/iris-data:v3 data/iris

      modelpack dataset pull ghcr.io/acme/iris-data:v3 data/iris --filter '*.csv'
    """
    from modelpack import api

    with access.targets() as targets, _output.progress_bars() as progress:
        result = api.dataset_pull(targets, reference, dest, glob=filter_, force=force, progress=progress)
    if as_json:
        return _output.emit_json(result.to_json())
    _output.info(
        f"pulled {result.reference}: {_output.count(len(result.files), 'file')}, {result.size:,} bytes"
    )
    _output.echo(result.digest)


@dataset_app.command("inspect")
@access_options
def inspect(reference: RefArg, as_json: JsonOpt = False, *, access: Access) -> None:
    """Show a dataset's record: statistics, files, source, commit, who and when.

    Examples:

      modelpack dataset inspect ghcr.io/acme/iris-data:v3

      modelpack dataset inspect ghcr.io/acme/iris-data:v3 --json | jq .record.classes
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.dataset_inspect(targets, reference)
    if as_json:
        return _output.emit_json(result.to_json())
    _record(result.reference, result.digest, result.record)


@dataset_app.command("ls")
@access_options
def ls(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="The dataset repository: HOST/REPO.")],
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """List a dataset repository's versions with their size, files and rows.

    Examples:

      modelpack dataset ls ghcr.io/acme/iris-data
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.dataset_ls(targets, repository)
    if as_json:
        return _output.emit_json(result.to_json())
    rows = [[t, r.count, f"{r.size:,}", "-" if r.rows is None else r.rows, r.created, d[:19]]
            for t, d, r in result.versions]  # fmt: skip
    _output.table(["TAG", "FILES", "BYTES", "ROWS", "CREATED", "DIGEST"], rows)


@dataset_app.command("diff")
@access_options
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="The older version.")],
    b: Annotated[str, typer.Argument(metavar="B", help="The newer version (a bare tag: in A's repository).")],
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Files added, removed and changed between two dataset versions, row counts, class shift per class.

    Examples:

      modelpack dataset diff ghcr.io/acme/iris-data:v2 ghcr.io/acme/iris-data:v3

      modelpack dataset diff ghcr.io/acme/iris-data:v2 v3
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.dataset_diff(targets, a, b)
    out = result.to_json()
    if as_json:
        return _output.emit_json(out)
    for what in ("added", "removed", "changed"):
        for c in out[what]:
            _output.echo(f"{what} {c['path']} ({c['sizeA'] or 0:,} -> {c['sizeB'] or 0:,} bytes)")
    _output.echo(f"rows: {out['rowsA']} -> {out['rowsB']}")
    rows = [[c["class"], c["countA"], c["countB"], f"{c['delta']:+d}", f"{c['shareDelta'] * 100:+.2f}%"]
            for c in out["classes"]]  # fmt: skip
    if rows:
        _output.table(["CLASS", "A", "B", "DELTA", "SHARE"], rows)


@dataset_app.command("used-by")
@access_options
def used_by(
    reference: RefArg,
    repositories: Annotated[list[str], typer.Argument(metavar="MODEL_REPO...", help="Model repositories.")],
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """The model versions whose record names this dataset (by digest, or same content), with metrics.

    Examples:

      modelpack dataset used-by ghcr.io/acme/iris-data:v3 ghcr.io/acme/iris ghcr.io/acme/iris-small
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.dataset_used_by(targets, reference, repositories)
    if as_json:
        return _output.emit_json(result.to_json())
    version = result.digest.split(":", 1)[-1][:12]  # the entry names this version: say which, by digest
    rows = [
        [f"{u.repository}:{u.tag}", f"{u.entry}@{version}", u.role, u.matched, _metrics(u.metrics)]
        for u in result.uses
    ]
    if not rows:
        return _output.info(f"no version of {', '.join(repositories)} records {result.reference}")
    _output.table(["MODEL", "AS", "ROLE", "MATCHED", "METRICS"], rows)


def _metrics(values: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in sorted(values.items())) or "-"


def _record(reference: str, digest: str, r: DatasetRecord) -> None:
    _output.echo(f"{reference}  {digest}")
    _output.echo(f"  {r.kind}, {_output.count(r.count, 'file')}, {r.size:,} bytes, hash {r.sha256}")
    for key, value in (("rows", r.rows), ("label", r.label), ("source", r.source), ("about", r.description)):
        if value is not None:
            _output.echo(f"  {key}: {value}")
    if r.git:
        _output.echo(f"  git: {r.git.commit[:12]}{' (dirty)' if r.git.dirty else ''}")
    _output.echo(f"  pushed by {r.who}, created {r.created}")
    if r.classes:
        _output.table(["CLASS", "COUNT"], sorted(r.classes.items()))
    _output.table(["FILE", "BYTES", "ROWS", "SHA256"],
                  [[f.path, f"{f.size:,}", next((s.rows for s in r.stats if s.path == f.path), "-"),
                    f.sha256.split(":")[1][:16]] for f in r.files])  # fmt: skip
    for note in r.notes:
        _output.echo(f"  note: {note}")
