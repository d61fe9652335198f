"""`modelpack deploy REPO ENV --kubernetes DIR`: the Kubernetes target's options and their one api call.

`deploy` (deploy_cmds) hands over to `run` when `--kubernetes` is given; the options live here so the
Docker target's command stays about the Docker target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output, _render
from modelpack.cli._options import Access

KubernetesOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubernetes",
        metavar="DIR",
        help="Write ENV's digest-pinned manifests under DIR (base/, overlays/ENV/, gitops/ENV/) and push "
        "them as a deployment bundle tagged deploy-ENV.",
        show_default=False,
    ),
]
KserveOpt = Annotated[
    bool | None,
    typer.Option(
        "--kserve/--no-kserve",
        help="With --kubernetes: a KServe InferenceService instead of a Deployment (default: the spec's "
        "target, set with `env set --target kserve`).",
        show_default=False,
    ),
]
KserveModeOpt = Annotated[
    str,
    typer.Option(
        "--kserve-mode", metavar="MODE", help="KServe deployment mode: knative (canaries) or standard."
    ),
]
RolloutsOpt = Annotated[
    bool,
    typer.Option(
        "--argo-rollouts",
        help="With --kubernetes: an Argo Rollouts Rollout that moves the HTTPRoute weights itself.",
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
NoPushOpt = Annotated[
    bool, typer.Option("--no-push", help="Write the files only; push no deployment bundle.")
]
ApplyOpt = Annotated[
    bool, typer.Option("--apply", help="With --kubernetes: then run kubectl apply -k on ENV's overlay.")
]
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
    kserve: bool | None,
    kserve_mode: str,
    argo_rollouts: bool,
    namespace: str | None,
    gateway: str | None,
    cpu: str | None,
    memory: str | None,
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
            argo_rollouts=argo_rollouts,
            namespace=namespace,
            gateway=gateway,
            cpu=cpu,
            memory=memory,
            push=not no_push,
            apply=apply,
            context=context,
        )
    if as_json:
        return _output.emit_json(result.to_json())
    _render.kubernetes(result)
