"""`env set | show` (an environment's deployment spec) and `deploy` (run what it names on the Docker
target: once, or following the registry)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelpack.deploy.spec import DeploySpec, updated
from modelpack.deploy.state import EnvState
from modelpack.deploy.stored import Step, read_spec, read_steps, write_spec
from modelpack.environment.history import format_when
from modelpack.environment.move import Runtime
from modelpack.environment.place import Place, check_env
from modelpack.errors import UsageError
from modelpack.targets import Targets

__all__ = ["DeployResult", "EnvResult", "deploy", "env_set", "env_show", "undeploy"]

PROXY_IMAGE_ENV = "MODELPACK_PROXY_IMAGE"


@dataclass(frozen=True)
class EnvResult:
    reference: str
    spec: DeploySpec
    stored: bool  # False: no spec was ever set, these are the defaults
    written: bool
    state: EnvState | None = None
    steps: tuple[Step, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "stored": self.stored,
            "written": self.written,
            "specDigest": self.spec.digest,
            "spec": self.spec.to_json(),
            "state": self.state.to_json() if self.state else None,
            "steps": [{**s.to_json(), "digest": s.digest} for s in self.steps],
        }


def env_set(
    targets: Targets, repository: str, env: str, *, runtime: Runtime | None = None, **changes: Any
) -> EnvResult:
    """Store `env`'s deployment spec: the one in force with `changes` applied (None leaves a value)."""
    rt = runtime or Runtime()
    place = _place(targets, repository, env)
    current = read_spec(place.target, env, place.name) or DeploySpec(env)
    spec = updated(current, **changes, who=rt.who(), created=format_when(rt.clock()))
    stored = write_spec(place.target, spec, place.name)
    return EnvResult(place.ref_text(env), stored, True, True)


def env_show(targets: Targets, repository: str, env: str) -> EnvResult:
    """The spec in force (or the defaults), what the environment names now, and the newest steps."""
    from modelpack.deploy.state import state_of
    from modelpack.environment.move import read_state

    place = _place(targets, repository, env)
    spec = read_spec(place.target, env, place.name)
    st = read_state(place, env, Runtime())
    state = state_of(env, st.history, st.current.digest if st.current else None)
    steps = tuple(read_steps(place.target, env, place.name, newest=10))
    return EnvResult(place.ref_text(env), spec or DeploySpec(env), spec is not None, False, state, steps)


@dataclass(frozen=True)
class DeployResult:
    reference: str
    host: str
    port: int
    state: EnvState
    weights: dict[str, int]
    started: tuple[str, ...]
    stopped: tuple[str, ...]
    changed: bool
    passes: int
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "engine": self.host,
            "port": self.port,
            "state": self.state.to_json(),
            "weights": self.weights,
            "started": list(self.started),
            "stopped": list(self.stopped),
            "changed": self.changed,
            "passes": self.passes,
            "notes": list(self.notes),
        }


def deploy(
    targets: Targets,
    repository: str,
    env: str,
    *,
    watch: bool = False,
    interval: float = 2.0,
    auto: bool = False,
    stop: threading.Event | None = None,
    info: Callable[[str], None] = lambda _m: None,
    environ: dict[str, str] | None = None,
    runtime: Runtime | None = None,
    passes: int | None = None,
    policy_key: str | None = None,
    key: str | None = None,
) -> DeployResult:
    """Run what `env` names on the Docker engine of DOCKER_HOST behind the proxy its spec describes; with
    `watch`, keep following the registry until `stop` is set (`auto`: canary analysis advances or aborts).
    `policy_key` (else $MODELPACK_POLICY_KEY): the policy owner's key, as promote takes it; `key`: the
    promoter key `--auto` signs its moves with when the policy names promoter keys."""
    from modelpack.api._environments import owner_keys, signing_runtime
    from modelpack.deploy.docker import DEFAULT_PROXY_IMAGE, DockerSite
    from modelpack.deploy.engine import connect, engine_host
    from modelpack.deploy.follow import Deployer

    if not 0.1 <= interval <= 3600:
        raise UsageError(f"--interval {interval:g}s: from 100ms to 1h")
    if auto and not watch:
        raise UsageError("--auto analyses a canary while following the registry: add --watch")
    environ = environ if environ is not None else dict(os.environ)
    where = targets.open(repository)
    place = _place(targets, repository, env)
    if watch and where.reference is not None and not where.reference.is_layout:
        from modelpack.registry.transport import RetryPolicy

        # a follower retries on its next pass: a registry outage is said within an interval or two,
        # not after the minute of backoff a one-shot command may spend
        targets.client(where.reference.registry).retry = RetryPolicy(
            attempts=2, base_delay=0.1, max_delay=0.5, max_total=max(1.0, interval)
        )
    if place.name is not None or place.display.startswith("oci:"):
        raise UsageError(
            f"{place.display} is not a registry repository: the Docker engine pulls releases by digest",
            hint="push the release to a registry and deploy from there (HOST/REPO)",
        )
    spec = read_spec(place.target, env, place.name) or DeploySpec(env)
    if spec.target != "docker":
        raise UsageError(
            f"{env}'s deployment target is {spec.target}: `modelpack deploy` runs the docker target",
            hint="write manifests with --kubernetes DIR, or `modelpack env set ... --target docker`",
        )
    host = engine_host(environ)
    client = connect(host)
    proxy_image = spec.proxy_image or environ.get(PROXY_IMAGE_ENV) or DEFAULT_PROXY_IMAGE
    site = DockerSite(client, host, place.display, env, spec)
    deployer = Deployer(
        place,
        env,
        site,
        spec,
        proxy_image,
        targets.store_path / "cache",
        info,
        signing_runtime(targets, runtime, key) or Runtime(),
        owners=owner_keys(targets, policy_key),
    )
    try:
        state, outcome = deployer.once()
        n = 1
        if watch:
            n += deployer.watch(stop or threading.Event(), interval, auto=auto, passes=passes)
            state = deployer.read()
        return DeployResult(
            place.ref_text(env),
            host,
            spec.port,
            state,
            outcome.weights,
            outcome.started,
            outcome.stopped,
            outcome.changed,
            n,
            outcome.notes,
        )
    finally:
        client.close()


def undeploy(targets: Targets, repository: str, env: str, *, environ: dict[str, str] | None = None) -> int:
    """Stop and remove `env`'s proxy and release containers on the engine; how many were removed."""
    from modelpack.deploy.docker import DockerSite
    from modelpack.deploy.engine import connect, engine_host

    place = _place(targets, repository, env)
    host = engine_host(environ if environ is not None else dict(os.environ))
    client = connect(host)
    try:
        return DockerSite(client, host, place.display, env, DeploySpec(env)).remove_all()
    finally:
        client.close()


def _place(targets: Targets, repository: str, env: str) -> Place:
    check_env(env)
    where = targets.open(repository)
    if where.ref is not None and where.kind != "layout":
        raise UsageError(
            f"{repository!r} names a release, not a repository",
            hint=f"give the repository alone, e.g. {where.repository}",
        )
    return Place.of(where)
