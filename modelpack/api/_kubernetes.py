"""`modelpack deploy REPO ENV --kubernetes DIR`: what ENV names, written as digest-pinned manifests (and
pushed as a deployment bundle, and applied with kubectl when asked)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.deploy.kubernetes import bundle as bundles
from modelpack.deploy.kubernetes import gitops, kserve, kustomize, rollouts
from modelpack.deploy.kubernetes import kubectl as kc
from modelpack.deploy.kubernetes import workload as wl
from modelpack.deploy.kubernetes.files import relative, write_tree
from modelpack.deploy.kubernetes.model import GatewayRef, KubeDeployment, Resources, Track, app_name
from modelpack.deploy.state import EnvState, state_of
from modelpack.deploy.stored import read_spec
from modelpack.environment.history import load_history
from modelpack.environment.place import Place, check_env
from modelpack.environment.promote import verify
from modelpack.errors import InputError, NotFoundError, UsageError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.record.record import Record
from modelpack.release.view import ReleaseView, load_release
from modelpack.targets import Targets

__all__ = ["KubernetesResult", "kubernetes_manifests", "subprocess_runner"]


@dataclass(frozen=True)
class KubernetesResult:
    repository: str
    env: str
    directory: str
    files: tuple[str, ...]  # relative to directory
    kind: str  # "kustomize", "kserve" or "rollouts"
    stable: str
    stable_version: str
    canary: str | None
    canary_version: str | None
    weight: int
    bundle: str | None  # HOST/REPO@digest of the pushed deployment bundle
    bundle_tag: str | None
    apply_command: tuple[str, ...] | None
    applied: str | None  # kubectl's output

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "env": self.env,
            "directory": self.directory,
            "files": list(self.files),
            "kind": self.kind,
            "stable": {"digest": self.stable, "version": self.stable_version},
            "canary": None
            if self.canary is None
            else {"digest": self.canary, "version": self.canary_version, "weight": self.weight},
            "bundle": None if self.bundle is None else {"reference": self.bundle, "tag": self.bundle_tag},
            "apply": None
            if self.apply_command is None
            else {"command": list(self.apply_command), "output": self.applied},
        }


def subprocess_runner(args: Sequence[str], timeout: float) -> kc.Completed:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise kc.ApplyError(f"kubectl apply did not finish within {timeout:.0f} s") from None
    return kc.Completed(done.returncode, done.stdout, done.stderr)


def kubernetes_manifests(
    targets: Targets,
    repository: str,
    env: str,
    directory: Path | str,
    *,
    use_kserve: bool | None = None,
    kserve_mode: str = "knative",
    argo_rollouts: bool = False,
    namespace: str | None = None,
    gateway: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    replicas: int | None = None,
    push: bool = True,
    apply: bool = False,
    context: str | None = None,
    runner: kc.Runner = subprocess_runner,
    kubectl: str | None = None,
) -> KubernetesResult:
    """Writes what `env` names (its stable release and, during a canary, the canary with its weight) as a
    kustomize base + overlay (or a KServe InferenceService) under `directory`; with `push`, the same files
    as a deployment bundle tagged `deploy-<env>`; with `apply`, `kubectl apply -k` of the overlay.
    `argo_rollouts` writes an Argo Rollouts Rollout instead of the two Deployments."""
    check_env(env)
    if argo_rollouts and use_kserve:
        raise UsageError("--kserve and --argo-rollouts are two ways to run ENV: choose one")
    if context is not None and not apply:
        raise UsageError("--context names the cluster --apply applies to: it needs --apply")
    where = targets.open(repository)
    if where.ref is not None:
        raise UsageError(
            f"{repository!r} names a release, not a repository",
            hint=f"give the repository: {where.repository}",
        )
    if where.kind != "registry":
        raise UsageError(
            f"{where.repository} is not a registry repository, and a cluster pulls images from a registry",
            hint="push the release and give HOST/REPO",
        )
    place = Place.of(where)
    state = _state(place, env)
    spec = read_spec(place.target, env, place.name)
    stable = _release(place, _named(place, env, state.stable), "stable")
    canary = _release(place, state.canary.digest, "canary") if state.canary is not None else None
    dep = KubeDeployment(
        name=app_name(where.repository),
        environment=env,
        repository=where.repository,
        stable=Track(stable.record.version, stable.digest),
        port=_port(stable),
        canary=Track(canary.record.version, canary.digest) if canary is not None else None,
        weight=state.canary.weight if state.canary is not None else 0,
        canary_port=_port(canary) if canary is not None else None,
        namespace=namespace,
        replicas=replicas if replicas is not None else (spec.replicas if spec is not None else 1),
        resources=Resources(cpu or Resources.cpu, memory or Resources.memory),
        gateway=GatewayRef.parse(gateway) if gateway else GatewayRef(),
    )
    if use_kserve is None:  # the environment's spec decides (`env set --target kserve`)
        use_kserve = not argo_rollouts and spec is not None and spec.target == "kserve"
    kind = "kserve" if use_kserve else "rollouts" if argo_rollouts else "kustomize"
    if use_kserve:
        manifests = kserve.render(dep, kserve_mode)
        extras = gitops.render(dep, kserve.IMAGE)
    elif argo_rollouts:
        manifests = rollouts.render(dep)
        extras = gitops.render(dep, rollouts.IMAGE)
    else:
        manifests = kustomize.render(dep)
        extras = gitops.render(dep)
    command = None
    if apply:  # checked before anything is written: a bad --context or no kubectl changes nothing
        command = kc.command(kubectl or kc.find_kubectl(), Path(directory) / "overlays" / env, context)
    root = Path(directory)
    written = write_tree(root, {**manifests, **extras})
    pushed = None
    if push:
        running = canary or stable
        subject = Descriptor(running.media_type, running.digest, running.size)
        pushed = bundles.push(place.target, manifests, subject, env, _annotations(dep))
    output = kc.apply(runner, command) if command is not None else None
    return KubernetesResult(
        repository=where.repository,
        env=env,
        directory=str(root),
        files=tuple(relative(written, root)),
        kind=kind,
        stable=dep.stable.digest,
        stable_version=dep.stable.version,
        canary=dep.canary.digest if dep.canary else None,
        canary_version=dep.canary.version if dep.canary else None,
        weight=dep.weight,
        bundle=f"{where.repository}@{pushed.digest}" if pushed else None,
        bundle_tag=pushed.tag if pushed else None,
        apply_command=tuple(command) if command is not None else None,
        applied=output,
    )


def _state(place: Place, env: str) -> EnvState:
    return state_of(env, load_history(place.target, env, place.name), verify(place, env))


def _named(place: Place, env: str, stable: str | None) -> str:
    if stable is None:
        raise NotFoundError(
            f"{place.ref_text(env)} names no release",
            hint=f"promote a release to {env} first, e.g. modelpack promote {place.display}:1.0.0 {env}",
        )
    return stable


def _release(place: Place, digest: str, role: str) -> _Release:
    view: ReleaseView = load_release(place.target, digest, layers=False)
    if view.image is None:
        raise InputError(
            f"the {role} release {place.ref_text(digest)} has no serving image: a cluster has nothing to run",
            hint="build it with --image and push it, then promote that release",
        )
    size = len(place.target.get_manifest(digest).raw)
    return _Release(view, size)


@dataclass(frozen=True)
class _Release:
    view: ReleaseView
    size: int

    @property
    def digest(self) -> str:
        return self.view.digest

    @property
    def media_type(self) -> str:
        return self.view.media_type

    @property
    def record(self) -> Record:
        return self.view.record


def _port(release: _Release) -> int:
    serving = release.record.serving
    return int(serving.port) if serving is not None else 8080


def _annotations(dep: KubeDeployment) -> dict[str, str]:
    running = dep.canary or dep.stable
    ann = {
        mt.ANN_TITLE: f"{dep.name} {dep.environment}",
        mt.ANN_VERSION: running.version,
        f"{wl.ANN}/environment": dep.environment,
        f"{wl.ANN}/stable-release": dep.stable.digest,
    }
    if dep.canary is not None:
        ann[f"{wl.ANN}/canary-release"] = dep.canary.digest
        ann[f"{wl.ANN}/canary-weight"] = str(dep.weight)
    return ann
