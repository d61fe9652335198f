"""`modelpack prune`: delete old versions, never what an environment runs or can roll back to."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, LocalOpt, access_options

if TYPE_CHECKING:
    from modelpack.api._retention import PruneResult
    from modelpack.retention.retention import Decision, Plan


@app.command()
@access_options
def prune(
    repository: Annotated[
        str, typer.Argument(metavar="REPO", help="The repository: HOST/REPO, oci:PATH, or a local NAME.")
    ],
    keep_last: Annotated[
        int | None,
        typer.Option("--keep-last", metavar="N", help="Keep the N highest versions.", show_default=False),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", metavar="PATTERN", help="Never delete tags matching this (e.g. '*-lts')."),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than", metavar="AGE", help="Delete only versions older than AGE: 90d, 12h, 2w."
        ),
    ] = None,
    history: Annotated[
        int, typer.Option("--history", metavar="K", help="Keep what each environment's last K events name.")
    ] = 10,
    used_by: Annotated[
        list[str] | None,
        typer.Option(
            "--used-by", metavar="REPO", help="A model repository whose records keep datasets here."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Delete old version tags and their test reports, signatures and attestations.

    Never deletes what an environment tag names, its rollback targets (the releases its last K events
    name), tags matching --keep, or dataset versions a kept model records. Without a terminal (CI), or
    with --json, it is a dry run unless --yes. Space is freed by the registry's own garbage collection:
    see docs/retention.md.

    Examples:

      modelpack prune ghcr.io/acme/iris --keep-last 20 --keep '*-lts' --dry-run

      modelpack prune 127.0.0.1:5000/acme/iris --older-than 90d --yes --json
    """
    from modelpack import api
    from modelpack.errors import RegistryError

    # Asking needs a terminal, and a prompt would corrupt --json: without either, only --yes deletes.
    preview = dry_run or (not yes and (as_json or not sys.stdin.isatty()))
    with access.targets() as targets:
        result = api.prune(
            targets,
            repository,
            keep_last=keep_last,
            keep=keep or (),
            older_than=older_than,
            history_depth=history,
            used_by=used_by or (),
            dry_run=preview,
            local=local,
            confirm=None if yes or preview else _confirm,
        )
    if as_json:
        _output.emit_json(result.to_json())
    else:
        _render(result)
    if result.failure:
        raise RegistryError(result.failure)


def _line(d: Decision) -> list[str]:
    action = "keep" if d.keep else ("untag" if d.tag_only else "delete")
    return [d.tag, d.digest.split(":", 1)[-1][:12], action, "; ".join(d.reasons)]


def _confirm(plan: Plan) -> bool:
    _output.table(["VERSION", "DIGEST", "ACTION", "WHY"], [_line(d) for d in plan.decisions])
    return typer.confirm(f"delete {_output.count(len(plan.deleted), 'version')}?", default=False)


def _render(result: PruneResult) -> None:
    _output.table(["VERSION", "DIGEST", "ACTION", "WHY"], [_line(d) for d in result.decisions])
    for d in result.deleted:
        what = f"tag {d.version}" if d.kind == "tag" else f"{d.kind} {d.digest} (for {d.version})"
        _output.echo(f"deleted {what}")
    if not result.dry_run:
        total = _output.count(len(result.decisions), "version")
        _output.info(f"{result.repository}: {len(result.deleted_versions)} of {total} deleted")
    for note in result.notes:
        _output.info(note)
