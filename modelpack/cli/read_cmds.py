"""`modelpack inspect`, `diff`, `ls` and `list`: reading releases, local or remote."""

from __future__ import annotations

from typing import Annotated

import typer

from modelpack.cli import _output, _render
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, LocalOpt, StoreOpt, access_options
from modelpack.errors import UsageError


@app.command()
@access_options
def inspect(
    reference: Annotated[
        str, typer.Argument(metavar="REF", help="A release: NAME:VERSION, HOST/REPO:TAG or oci:PATH:TAG.")
    ],
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Show a release's record, layers and sizes, from its manifests alone (no blob is pulled).

    Examples:

      modelpack inspect ghcr.io/acme/iris:1.4.0

      modelpack inspect iris:1.4.0 --json
    """
    from modelpack import api

    _output.said_local(local)

    with access.targets() as targets:
        result = api.inspect(targets, reference, local=local)
    if as_json:
        return _output.emit_json(result.to_json())
    _render.release(result.reference, result.release, result)


@app.command()
@access_options
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="The older release.")],
    b: Annotated[
        str, typer.Argument(metavar="B", help="The newer release, or just its tag in A's repository.")
    ],
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when a metric regressed (for CI).")
    ] = False,
    better: Annotated[
        list[str] | None,
        typer.Option(
            "--better",
            metavar="METRIC=higher|lower",
            help="Which way is better for a metric (default: what the gates say).",
        ),
    ] = None,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """What changed between two releases: metrics, data and model hashes, packages, params, commit.
    With --exit-code, exit 1 when a metric moved the wrong way (the gates say which way is better).

    Examples:

      modelpack diff ghcr.io/acme/iris:1.3.0 1.4.0

      modelpack diff iris:1.0.0 iris:1.1.0 --exit-code --better loss=lower
    """
    from modelpack import api

    _output.said_local(local)

    with access.targets() as targets:
        result = api.diff(targets, a, b, local=local, better=better or ())
    if as_json:
        _output.emit_json(result.to_json())
    else:
        _render.diff(result.a, result.b, result.diff)
    if exit_code and result.diff.regressions:
        raise typer.Exit(1)


@app.command("ls")
@access_options
def ls_cmd(
    repository: Annotated[
        str | None,
        typer.Argument(
            metavar="REPO", help="HOST/REPO, oci:PATH, or a NAME in the local store.", show_default=False
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option("--sort", metavar="METRIC", help="Order by this metric, best (highest) first."),
    ] = None,
    asc: Annotated[bool, typer.Option("--asc", help="With --sort: lowest first.")] = False,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="COND",
            help="param.KEY<VALUE, a metric gate (f1>=0.9), tag=NAME, dataset=NAME or REG/REPO:TAG;"
            " repeat to require all.",
        ),
    ] = None,
    columns: Annotated[
        list[str] | None,
        typer.Option("--columns", metavar="PARAMS", help="Params to show as columns, comma-separated."),
    ] = None,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """List a repository's versions; with --sort/--where/--json, read every version's record (manifests only).

    Examples:

      modelpack ls ghcr.io/acme/iris --sort accuracy --where dataset=iris-test-v3

      modelpack ls ghcr.io/acme/iris --where 'latency_p95_ms<=5' --sort accuracy

      modelpack ls ghcr.io/acme/iris --where 'param.alpha<0.001' --columns alpha,max_iter

      modelpack ls iris                       # a repository of the local store
    """
    from modelpack import api

    _output.said_local(local)

    if repository is None:
        raise UsageError(
            "ls lists one repository's versions: name it", hint="for the whole local store: modelpack list"
        )
    with access.targets() as targets:
        result = api.ls(
            targets,
            repository,
            sort=sort,
            asc=asc,
            where=where or (),
            records=as_json,
            local=local,
            columns=[c.strip() for text in columns or () for c in text.split(",") if c.strip()],
        )
    if as_json:
        return _output.emit_json(result.to_json())
    for note in result.notes:
        _output.info(note)
    if result.versions or not result.tags:
        return _render.versions(result, result.repository, bool(where))
    for t in result.tags:
        _output.echo(f"{t}  (environment)" if t in result.environments else t)


@app.command("list")
def list_cmd(
    repository: Annotated[str | None, typer.Argument(metavar="[REPO]", hidden=True)] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the releases in the local store, by repository and tag (the names other commands take).

    Examples:

      modelpack list

      modelpack list --json
    """
    from modelpack import api

    if repository is not None:  # what `ls` takes: say so rather than guess which listing was meant
        raise UsageError(
            f"list shows the whole local store; for the versions of {repository}: modelpack ls {repository}"
        )
    with Access(store=store).targets() as targets:
        result = api.list(targets)
    if as_json:
        return _output.emit_json(result.to_json())
    rows = [(e.repository, e.tag, e.digest[:19], e.kind) for e in result.entries]
    _output.table(["REPOSITORY", "TAG", "DIGEST", "KIND"], rows)
