"""`modelpack deploy` (run what an environment names on a Docker engine, once or following the registry)
and `modelpack env set | show` (the environment's deployment spec, stored in the registry)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelpack.cli import _output, _render
from modelpack.cli import kubernetes_cmds as k8s
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, access_options
from modelpack.cli.env_cmds import EnvArg, PolicyKeyOpt, RepoArg, SignKeyOpt
from modelpack.errors import UsageError

env_app = typer.Typer(
    name="env",
    help=(
        "Set or show how an environment runs: its deployment target and strategy, stored in the registry "
        "beside its policy.\n\n"
        "Examples:\n\n"
        "  modelpack env set ghcr.io/acme/iris prod --strategy canary --canary-steps 10,50,100 --pause 5m\n\n"
        "  modelpack env show ghcr.io/acme/iris prod"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(env_app, name="env")


def _opt(flag: str, metavar: str, text: str) -> object:
    return typer.Option(flag, metavar=metavar, help=text, show_default=False)


@env_app.command("set")
@access_options
def set_(
    repository: RepoArg,
    env: EnvArg,
    target: Annotated[
        str | None, _opt("--target", "TARGET", "docker (default), kubernetes or kserve.")
    ] = None,
    strategy: Annotated[
        str | None, _opt("--strategy", "STRATEGY", "blue-green (default) or canary (for --auto steps).")
    ] = None,
    canary_steps: Annotated[
        str | None, _opt("--canary-steps", "PERCENTS", "Automatic canary steps, ascending to 100: 10,50,100.")
    ] = None,
    pause: Annotated[str | None, _opt("--pause", "DURATION", "Time each canary step holds: 30s, 5m.")] = None,
    keep_warm: Annotated[
        str | None, _opt("--keep-warm", "DURATION", "How long the previous release keeps running: 10m.")
    ] = None,
    port: Annotated[int | None, _opt("--port", "PORT", "The public port the proxy owns (8080).")] = None,
    address: Annotated[str | None, _opt("--address", "IP", "Where the proxy binds it (127.0.0.1).")] = None,
    network: Annotated[
        str | None, _opt("--network", "NAME", "host (default) or a Docker bridge network's name.")
    ] = None,
    proxy_image: Annotated[
        str | None, _opt("--proxy-image", "IMAGE", "The HAProxy image (default haproxy:2.6).")
    ] = None,
    ready_timeout: Annotated[
        str | None, _opt("--ready-timeout", "DURATION", "A release not ready by then is never switched to.")
    ] = None,
    drain: Annotated[
        str | None, _opt("--drain", "DURATION", "In-flight time for a release leaving (2s).")
    ] = None,
    replicas: Annotated[int | None, _opt("--replicas", "N", "Pods per release (Kubernetes targets).")] = None,
    max_error_increase: Annotated[
        float | None, _opt("--max-error-increase", "RATE", "--auto: canary error rate over stable's (0.01).")
    ] = None,
    max_p99_ratio: Annotated[
        float | None, _opt("--max-p99-ratio", "RATIO", "--auto: canary p99 over stable's (1.5).")
    ] = None,
    min_requests: Annotated[
        int | None, _opt("--min-requests", "N", "--auto: requests each side answers before judging (20).")
    ] = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Store ENV's deployment spec in the registry (changing only the options given). What runs is always
    the digest ENV names; the spec says where and how.

    Examples:

      modelpack env set ghcr.io/acme/iris prod --target docker --port 8080 --keep-warm 10m

      modelpack env set ghcr.io/acme/iris prod --strategy canary --canary-steps 10,50,100 --pause 30s
    """
    from dataclasses import replace

    from modelpack import api
    from modelpack.deploy.spec import parse_duration, parse_steps

    def seconds(text: str | None, flag: str) -> float | None:
        return parse_duration(text, flag) if text is not None else None

    changes: dict[str, Any] = {
        "target": target,
        "strategy": strategy,
        "canary_steps": parse_steps(canary_steps) if canary_steps is not None else None,
        "pause_s": seconds(pause, "--pause"),
        "keep_warm_s": seconds(keep_warm, "--keep-warm"),
        "port": port,
        "address": address,
        "network": network,
        "proxy_image": proxy_image,
        "ready_timeout_s": seconds(ready_timeout, "--ready-timeout"),
        "drain_s": seconds(drain, "--drain"),
        "replicas": replicas,
    }
    bounds: dict[str, Any] = {"max_error_rate_increase": max_error_increase, "max_p99_ratio": max_p99_ratio}
    bounds.update({"min_requests": min_requests})
    with access.targets() as targets:
        if any(v is not None for v in bounds.values()):
            current = api.env_show(targets, repository, env).spec.bounds
            changes["bounds"] = replace(current, **{k: v for k, v in bounds.items() if v is not None})
        result = api.env_set(targets, repository, env, **changes)
    if as_json:
        return _output.emit_json(result.to_json())
    _render.env_spec(result)


@env_app.command("show")
@access_options
def show(repository: RepoArg, env: EnvArg, as_json: JsonOpt = False, *, access: Access) -> None:
    """Show ENV's deployment spec, what it names now (stable, and a canary with its share) and the newest
    deployment steps.

    Examples:

      modelpack env show ghcr.io/acme/iris prod

      modelpack env show ghcr.io/acme/iris prod --json
    """
    from modelpack import api

    with access.targets() as targets:
        result = api.env_show(targets, repository, env)
    if as_json:
        return _output.emit_json(result.to_json())
    _render.env_spec(result)


@app.command()
@access_options
def deploy(
    repository: RepoArg,
    env: EnvArg,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Keep following the registry: promotes and rollbacks reach the proxy."),
    ] = False,
    interval: Annotated[
        str, _opt("--interval", "DURATION", "How often --watch reads the registry (2s).")
    ] = "2s",
    auto: Annotated[
        bool,
        typer.Option("--auto", help="With --watch: advance or abort a canary from the releases' metrics."),
    ] = False,
    down: Annotated[bool, typer.Option("--down", help="Stop and remove ENV's proxy and releases.")] = False,
    key: SignKeyOpt = None,
    policy_key: PolicyKeyOpt = None,
    kubernetes: k8s.KubernetesOpt = None,
    kserve: k8s.KserveOpt = None,
    kserve_mode: k8s.KserveModeOpt = "knative",
    argo_rollouts: k8s.RolloutsOpt = False,
    namespace: k8s.NamespaceOpt = None,
    gateway: k8s.GatewayOpt = None,
    cpu: k8s.CpuOpt = None,
    memory: k8s.MemoryOpt = None,
    no_push: k8s.NoPushOpt = False,
    apply: k8s.ApplyOpt = False,
    context: k8s.ContextOpt = None,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Run what ENV names on the Docker engine (DOCKER_HOST; unix://, tcp:// or ssh://) behind a reverse proxy
    (HAProxy) that owns the public port. A new release starts beside the old one and takes traffic only
    once ready and its golden cases pass; the previous release stays warm, so a rollback is a proxy switch.

    Examples:

      modelpack deploy ghcr.io/acme/iris prod

      modelpack deploy ghcr.io/acme/iris prod --watch --interval 2s --auto

      DOCKER_HOST=ssh://deploy@gpu-box modelpack deploy ghcr.io/acme/iris prod

    With --kubernetes DIR, nothing runs here: ENV is written as digest-pinned manifests under DIR (a
    kustomize base and an ENV overlay; during a canary a second Deployment and a Gateway API HTTPRoute
    with the weights; with --kserve a KServe InferenceService), pushed as a deployment bundle (tag
    deploy-ENV) that refers to the release, and applied with kubectl when --apply is given:

      modelpack deploy ghcr.io/acme/iris prod --kubernetes deploy/

      modelpack deploy ghcr.io/acme/iris staging --kubernetes deploy/ --apply --context staging-eu
    """
    if kubernetes is not None:
        if watch or auto or down:
            raise UsageError(
                "--kubernetes writes manifests: --watch, --auto and --down are the Docker target's"
            )
        return k8s.run(
            access,
            repository,
            env,
            kubernetes,
            kserve=kserve,
            kserve_mode=kserve_mode,
            argo_rollouts=argo_rollouts,
            namespace=namespace,
            gateway=gateway,
            cpu=cpu,
            memory=memory,
            no_push=no_push,
            apply=apply,
            context=context,
            as_json=as_json,
        )
    k8s_only = (apply, context, no_push, namespace, gateway, cpu, memory, argo_rollouts)
    if kserve is not None or any(k8s_only):
        raise UsageError(
            "--kserve, --argo-rollouts, --apply, --context, --namespace, --gateway, --cpu, --memory and "
            "--no-push go with --kubernetes DIR"
        )
    import signal
    import threading

    from modelpack import api
    from modelpack.deploy.spec import parse_duration

    every = parse_duration(interval, "--interval")
    with access.targets() as targets:
        if down:
            n = api.undeploy(targets, repository, env)
            _output.info(f"removed {n} container(s) of {env}")
            return None
        stop = threading.Event()
        if watch:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        result = api.deploy(
            targets,
            repository,
            env,
            watch=watch,
            interval=every,
            auto=auto,
            stop=stop,
            info=_output.info,
            policy_key=policy_key,
            key=key,
        )
    if watch:
        _output.info("stopped following the registry; the proxy and releases keep running")
    if as_json:
        return _output.emit_json(result.to_json())
    _render.deployed(result)
