"""`modelpack policy set|show`: what an environment requires before `promote` moves it."""

from __future__ import annotations

from typing import Annotated

import typer

from modelpack.cli import _output, _render
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, access_options
from modelpack.cli.env_cmds import EnvArg, PolicyKeyOpt, RepoArg

policy_app = typer.Typer(
    name="policy",
    help=(
        "Set or show what an environment requires of a release before promote moves it there.\n\n"
        "Examples:\n\n"
        "  modelpack policy set ghcr.io/acme/sentiment prod --require test:docker,signature:release.pub\n\n"
        "  modelpack policy show ghcr.io/acme/sentiment prod"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(policy_app, name="policy")


@policy_app.command("set")
@access_options
def set_(
    repository: RepoArg,
    env: EnvArg,
    require: Annotated[
        str,
        typer.Option(
            "--require",
            metavar="REQS",
            help="Comma-separated: test[:docker|local][:cases=N][:gate=METRIC][:gate=METRIC>=N]"
            "[:cases-digest=sha256:HEX][:KEY.pub], signature:KEY.pub[@YYYY-MM-DD], "
            "model-signature:KEY.pub, provenance[:KEY.pub], sbom, promoter:KEY.pub.",
        ),
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="OWNER.key",
            help="Sign the policy with the owner's private key; readers given OWNER.pub (--policy-key, "
            "MODELPACK_POLICY_KEY) count only policies it signed.",
            show_default=False,
        ),
    ] = None,
    policy_key: PolicyKeyOpt = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Store ENV's promotion policy in the registry, beside the environment (never in a release: a
    release must not certify itself). promote refuses what it lacks, even with --force; rollback warns.
    The public keys are copied into the policy, so every machine enforces the same rule.

    Examples:

      modelpack policy set ghcr.io/acme/iris prod --require test:docker,signature:release.pub,sbom

      modelpack policy set ghcr.io/acme/sentiment prod --require "signature:release.pub@2027-06-30"

      modelpack policy set ghcr.io/acme/iris prod --require test:docker,promoter:ops.pub --key owner.key
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.policy_set(targets, repository, env, require, key=key, policy_key=policy_key)
    if as_json:
        return _output.emit_json(result.to_json())
    _render.policy(result)


@policy_app.command("show")
@access_options
def show(
    repository: RepoArg,
    env: EnvArg,
    policy_key: PolicyKeyOpt = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Show the policy in force for ENV: its requirements, the keys by id, who set it and when.

    Examples:

      modelpack policy show ghcr.io/acme/sentiment prod

      modelpack policy show iris staging --json
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.policy_show(targets, repository, env, policy_key=policy_key)
    if as_json:
        return _output.emit_json(result.to_json())
    _render.policy(result)
