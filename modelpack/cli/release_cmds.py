"""`modelpack promote`, `history` and `rollback`: moving environment tags, with the trail in the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import CaFileOpt, InsecureOpt, JsonOpt, PlainHttpOpt, StoreOpt, open_targets

if TYPE_CHECKING:
    from modelpack.release.history import Event
    from modelpack.release.promote import MoveResult

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Say what would change; change nothing.")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why: recorded in the event (required with --force).")
]


def _render(result: MoveResult, as_json: bool) -> None:
    from modelpack.release.history import short

    if as_json:
        _output.emit_json(result.to_json())
        return
    for note in result.notes:
        _output.info(note)
    e = result.event
    if not result.changed and not result.dry_run:
        return
    verb = "would move" if result.dry_run else "moved"
    _output.info(
        f"{verb} {result.reference}: {short(e.from_digest)} -> {short(e.to_digest)} "
        f"({e.action} of {e.version})"
    )
    if not result.dry_run:
        typer.echo(e.to_digest)


def _arrow(e: Event) -> str:
    from modelpack.release.history import short

    return f"{short(e.from_digest)} -> {short(e.to_digest)}"


@app.command()
def promote(
    reference: Annotated[
        str, typer.Argument(help="The release: HOST/REPO:VERSION, oci:PATH:TAG, NAME:VERSION.")
    ],
    env: Annotated[str, typer.Argument(help="The environment tag to point at it, e.g. prod or staging.")],
    force: Annotated[
        bool, typer.Option("--force", help="Promote without a passing test report (needs --reason).")
    ] = False,
    reason: ReasonOpt = "",
    dry_run: DryRunOpt = False,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point ENV at a tested release: one manifest PUT of the same index bytes, whatever the model's size.

    Refuses a release with no passing test report attached to exactly its digest. Records an event
    (who, when, from, to, reason) in the registry, so `history` and `rollback` work from any machine.

    Example: modelpack promote ghcr.io/acme/sentiment:1.4.0 prod
    """
    from modelpack.release.place import open_release
    from modelpack.release.promote import promote as do_promote

    with open_targets(store, ca_file, insecure, plain_http) as targets:
        place, ref = open_release(targets, reference)
        result = do_promote(place, ref, env, force=force, reason=reason, dry_run=dry_run)
    _render(result, as_json)


@app.command()
def rollback(
    repository: Annotated[str, typer.Argument(help="The repository: HOST/REPO, oci:PATH, or a local NAME.")],
    env: Annotated[str, typer.Argument(help="The environment tag to move back, e.g. prod.")],
    version: Annotated[
        str | None,
        typer.Argument(help="The version to move ENV to. Default: what ENV named before its last move."),
    ] = None,
    reason: ReasonOpt = "",
    dry_run: DryRunOpt = False,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move ENV back to VERSION (or to the entry before the current one), record it, read the tag back.

    An incident tool: it checks no test report, and says so.

    Examples:

      modelpack rollback ghcr.io/acme/sentiment prod

      modelpack rollback ghcr.io/acme/sentiment prod 1.3.2 --reason "p95 latency regression"
    """
    from modelpack.release.place import open_repository
    from modelpack.release.promote import rollback as do_rollback

    with open_targets(store, ca_file, insecure, plain_http) as targets:
        place = open_repository(targets, repository)
        result = do_rollback(place, env, version, reason=reason, dry_run=dry_run)
    _render(result, as_json)


@app.command()
def history(
    repository: Annotated[str, typer.Argument(help="The repository: HOST/REPO, oci:PATH, or a local NAME.")],
    env: Annotated[str, typer.Argument(help="The environment tag, e.g. prod.")],
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List ENV's promotions and rollbacks, newest first, from the registry; marks the current one.

    Example: modelpack history ghcr.io/acme/sentiment prod
    """
    from modelpack.release.history import load_history, short
    from modelpack.release.place import check_env, open_repository
    from modelpack.release.promote import verify

    check_env(env)
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        place = open_repository(targets, repository)
        hist = load_history(place.target, env, place.name)
        current = verify(place, env)
    entries = hist.newest_first()
    head = hist.head
    if as_json:
        _output.emit_json(
            {
                "reference": place.ref_text(env),
                "current": current,
                "events": [
                    {
                        **e.to_json(),
                        "digest": e.digest,
                        "status": "superseded" if not in_effect else "in effect",
                        "current": in_effect
                        and head is not None
                        and e.digest == head.digest
                        and e.to_digest == current,
                    }
                    for e, in_effect in entries
                ],
            }
        )
        return
    if not entries:
        _output.info(f"no recorded events for {place.ref_text(env)} (it names {short(current)})")
        return
    rows = [["", "when (UTC)", "action", "version", "from -> to", "who", "reason"]]
    for e, in_effect in entries:
        is_current = in_effect and head is not None and e.digest == head.digest and e.to_digest == current
        status = e.action + (" (forced)" if e.forced else "") + ("" if in_effect else " SUPERSEDED")
        when = e.when[:19].replace("T", " ")
        rows.append(["*" if is_current else "", when, status, e.version, _arrow(e), e.who, e.reason])
    # Plain aligned lines, never wrapped: a history is read in terminals of any width and in CI logs.
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        typer.echo(("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]).rstrip())
    if head is not None and head.to_digest != current:
        _output.info(
            f"note: {env} names {short(current)}, which no recorded event put there (moved outside modelpack)"
        )
