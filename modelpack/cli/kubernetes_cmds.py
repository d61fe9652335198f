"""`modelpack deploy REPO ENV --kubernetes DIR`: the Kubernetes target's options and their one api call.

`run` is the whole command; the `deploy` command of the Docker target hands over to it when
`--kubernetes` is given (until that command exists, this module registers `deploy` itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output, _render
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, access_options
from modelpack.errors import UsageError

KubernetesOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubernetes",
        metavar="DIR",
        help="Write ENV's digest-pinned manifests under DIR (base/, overlays/ENV/, gitops/ENV/) and push "
        "them as the deployment bundle ENV's deploy-ENV tag names.",
        show_default=False,
    ),
]
KserveOpt = Annotated[
    bool,
    typer.Option("--kserve", help="With --kubernetes: a KServe InferenceService instead of a Deployment."),
]
KserveModeOpt = Annotated[
    str,
    typer.Option(
        "--kserve-mode", metavar="MODE", help="KServe deployment mode: knative (canaries) or standard."
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", metavar="NS", help="The namespace (default: ENV).", show_default=False),
]
GatewayOpt = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        metavar="[NS/]NAME",
        help="The Gateway a canary's HTTPRoute attaches to (default: gateway).",
        show_default=False,
    ),
]
CpuOpt = Annotated[
    str | None, typer.Option("--cpu", metavar="QTY", help="CPU request (default 250m).", show_default=False)
]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory", metavar="QTY", help="Memory request and limit (default 512Mi).", show_default=False
    ),
]
ReplicasOpt = Annotated[
    int | None,
    typer.Option(
        "--replicas", metavar="N", help="Pods per release (default: the spec's, else 1).", show_default=False
    ),
]
NoPushOpt = Annotated[
    bool, typer.Option("--no-push", help="Write the files only; push no deployment bundle.")
]
ApplyOpt = Annotated[bool, typer.Option("--apply", help="Then run kubectl apply -k on ENV's overlay.")]
ContextOpt = Annotated[
    str | None,
    typer.Option(
        "--context", metavar="NAME", help="The kubeconfig context --apply uses.", show_default=False
    ),
]


def run(
    access: Access,
    repository: str,
    env: str,
    directory: Path,
    *,
    kserve: bool,
    kserve_mode: str,
    namespace: str | None,
    gateway: str | None,
    cpu: str | None,
    memory: str | None,
    replicas: int | None,
    no_push: bool,
    apply: bool,
    context: str | None,
    as_json: bool,
) -> None:
    from modelpack import api

    with access.targets() as targets:
        result = api.kubernetes_manifests(
            targets,
            repository,
            env,
            directory,
            use_kserve=kserve,
            kserve_mode=kserve_mode,
            namespace=namespace,
            gateway=gateway,
            cpu=cpu,
            memory=memory,
            replicas=replicas,
            push=not no_push,
            apply=apply,
            context=context,
        )
    if as_json:
        return _output.emit_json(result.to_json())
    _render.kubernetes(result)


@app.command()
@access_options
def deploy(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="The registry repository: HOST/REPO.")],
    env: Annotated[str, typer.Argument(metavar="ENV", help="The environment tag, e.g. prod or staging.")],
    kubernetes: KubernetesOpt = None,
    kserve: KserveOpt = False,
    kserve_mode: KserveModeOpt = "knative",
    namespace: NamespaceOpt = None,
    gateway: GatewayOpt = None,
    cpu: CpuOpt = None,
    memory: MemoryOpt = None,
    replicas: ReplicasOpt = None,
    no_push: NoPushOpt = False,
    apply: ApplyOpt = False,
    context: ContextOpt = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Run what ENV names. With --kubernetes DIR: write it as manifests a GitOps tool applies (a kustomize
    base and an ENV overlay pinned by digest; during a canary a second Deployment and a Gateway API
    HTTPRoute with the weights), push them as a deployment bundle that refers to the release, and with
    --apply run kubectl apply -k.

    Examples:

      modelpack deploy ghcr.io/acme/sentiment prod --kubernetes deploy/

      modelpack deploy ghcr.io/acme/sentiment prod --kubernetes deploy/ --kserve

      modelpack deploy ghcr.io/acme/sentiment staging --kubernetes deploy/ --apply --context staging-eu
    """
    if kubernetes is None:
        raise UsageError(
            "give --kubernetes DIR", hint="e.g. modelpack deploy HOST/REPO prod --kubernetes deploy/"
        )
    run(
        access,
        repository,
        env,
        kubernetes,
        kserve=kserve,
        kserve_mode=kserve_mode,
        namespace=namespace,
        gateway=gateway,
        cpu=cpu,
        memory=memory,
        replicas=replicas,
        no_push=no_push,
        apply=apply,
        context=context,
        as_json=as_json,
    )
