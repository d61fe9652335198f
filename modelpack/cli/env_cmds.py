"""`modelpack promote`, `rollback` and `history`: moving environment tags, with the trail in the registry."""

from __future__ import annotations

from typing import Annotated

import typer

from modelpack.cli import _output, _render
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, access_options

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Say what would change; change nothing.")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", metavar="TEXT", help="Why: recorded in the event (required with --force).")
]
EnvArg = Annotated[str, typer.Argument(metavar="ENV", help="The environment tag, e.g. prod or staging.")]
SignKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        metavar="KEY",
        help="Sign the event with this promoter's private key (path, env://NAME or -): needed when the "
        "policy names promoter keys.",
        show_default=False,
    ),
]
PolicyKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--policy-key",
        metavar="OWNER.pub",
        envvar="MODELPACK_POLICY_KEY",
        help="The policy owner's public key, given out of band: only a policy it signed counts.",
        show_default=False,
    ),
]
RepoArg = Annotated[
    str, typer.Argument(metavar="REPO", help="The repository: HOST/REPO, oci:PATH, or a local NAME.")
]


@app.command()
@access_options
def promote(
    reference: Annotated[
        str, typer.Argument(metavar="REF", help="The release: HOST/REPO:VERSION, oci:PATH:TAG, NAME:VERSION.")
    ],
    env: EnvArg,
    force: Annotated[
        bool, typer.Option("--force", help="Promote without a passing test report (needs --reason).")
    ] = False,
    require_runtime: Annotated[
        str | None,
        typer.Option(
            "--require-runtime",
            metavar="RUNTIME",
            help="Accept only a report from this runtime: docker (the serving image) or local.",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        int | None,
        typer.Option(
            "--canary",
            metavar="PERCENT",
            help="Send PERCENT (1-99) of ENV's requests to REF; ENV keeps naming the stable release. "
            "A plain promote of REF finishes the canary, `rollback` aborts it.",
            show_default=False,
        ),
    ] = None,
    reason: ReasonOpt = "",
    dry_run: DryRunOpt = False,
    key: SignKeyOpt = None,
    policy_key: PolicyKeyOpt = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Point ENV at a tested release: one manifest PUT of the same index bytes, whatever the model's size.
    With --canary, record a canary instead: `modelpack deploy` sends that share of requests to REF.

    Refuses a release with no passing test report attached to exactly its digest. Records an event
    (who, when, from, to, reason) in the registry, so `history` and `rollback` work from any machine.

    Examples:

      modelpack promote ghcr.io/acme/sentiment:1.4.0 prod --require-runtime docker

      modelpack promote ghcr.io/acme/sentiment:1.4.0 staging --force --reason "hotfix, tested by hand"

      MODELPACK_POLICY_KEY=owner.pub modelpack promote ghcr.io/acme/sentiment:1.4.0 prod --key ops.key

      modelpack promote ghcr.io/acme/sentiment:1.5.0 prod --canary 10   (then --canary 50, then no --canary)
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.promote(
            targets,
            reference,
            env,
            force=force,
            reason=reason,
            dry_run=dry_run,
            require_runtime=require_runtime,
            key=key,
            policy_key=policy_key,
            canary=canary,
        )
    if as_json:
        return _output.emit_json(result.to_json())
    _render.move(result)


@app.command()
@access_options
def rollback(
    repository: RepoArg,
    env: EnvArg,
    version: Annotated[
        str | None,
        typer.Argument(
            metavar="[VERSION]", help="The version to move ENV to. Default: what was in effect before."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Allow a VERSION that ENV never ran (needs --reason; policy applies)."),
    ] = False,
    reason: ReasonOpt = "",
    dry_run: DryRunOpt = False,
    key: SignKeyOpt = None,
    policy_key: PolicyKeyOpt = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Move ENV back to VERSION (or to what was in effect before its current release), record it, and
    read the tag back. An incident tool: it checks no test report, and says so. During a canary, a
    rollback without VERSION aborts the canary (every request back to the stable release). A VERSION that
    ENV never ran is refused (promote it instead) unless --force --reason, and then must meet ENV's policy.

    Examples:

      modelpack rollback ghcr.io/acme/sentiment prod

      modelpack rollback ghcr.io/acme/sentiment prod 1.3.2 --reason "p95 latency regression"
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.rollback(
            targets,
            repository,
            env,
            version,
            reason=reason,
            dry_run=dry_run,
            force=force,
            key=key,
            policy_key=policy_key,
        )
    if as_json:
        return _output.emit_json(result.to_json())
    _render.move(result)


@app.command()
@access_options
def history(
    repository: RepoArg,
    env: EnvArg,
    policy_key: PolicyKeyOpt = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """List ENV's promotions and rollbacks, newest first, from the registry; marks the current one.

    Examples:

      modelpack history ghcr.io/acme/sentiment prod

      modelpack history iris staging --json
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.history(targets, repository, env, policy_key=policy_key)
    if as_json:
        return _output.emit_json(result.to_json())
    _render.history(result, env)


@app.command()
@access_options
def archive(
    repository: RepoArg,
    versions: Annotated[list[str], typer.Argument(metavar="VERSION...", help="The versions to label.")],
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why (required): recorded with who and when.")
    ] = "",
    clear: Annotated[bool, typer.Option("--clear", help="Take the label off again (recorded too).")] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Label versions archived (or --clear it), many at once, with who and why: ls and the portal show it,
    and prune counts an archived version out of --keep-last. Environments are not touched.

    Examples:

      modelpack archive ghcr.io/acme/iris 1.0.0 1.1.0 1.2.0 --reason "trained on the v1 labels"

      modelpack archive ghcr.io/acme/iris 1.1.0 --clear --reason "needed for the audit"
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.archive(targets, repository, versions, reason=reason, clear=clear)
    if as_json:
        return _output.emit_json(result.to_json())
    verb = "archived" if result.on else "cleared archived on"
    _output.info(f"{verb} {_output.count(len(result.versions), 'version')} of {result.repository}")
    for tag, digest in result.versions:
        _output.echo(f"{tag}  {digest}")


@app.command()
@access_options
def naming(
    repository: RepoArg,
    pattern: Annotated[
        str | None,
        typer.Argument(metavar="[PATTERN]", help="A regular expression every pushed tag must match in full."),
    ] = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Show, or declare, the repository's naming rule for version tags: push refuses a tag that does not
    match it in full (recorded in the registry with who and when; the newest rule is in force).

    Examples:

      modelpack naming ghcr.io/acme/bert 'model-bert-[a-z0-9]+-acc[0-9]+-v[0-9]+'

      modelpack naming ghcr.io/acme/iris '[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9]{14}-[0-9a-f]{7})?'

      modelpack naming ghcr.io/acme/iris
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.naming(targets, repository, pattern)
    if as_json:
        return _output.emit_json(result.to_json())
    n = result.naming
    if n is None:
        return _output.info(f"{result.repository} declares no naming rule: push takes any tag")
    _output.echo(f"{result.repository}: version tags match {n.pattern!r} (declared by {n.who}, {n.created})")
