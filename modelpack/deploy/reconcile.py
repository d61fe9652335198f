"""One reconciliation of the Docker target: make the proxy send what the environment names (its state:
stable, and a canary with its weight) to running, ready release containers.

The order keeps every request answered. A release that is not running yet is admitted (the environment's
policy, `admit`), started beside the others, and must answer /v2/health/ready and its golden cases before
any request goes to it; if it does not, it is removed and nothing is switched (the old keeps serving, the
error says why). Then one runtime-API call routes the new shares and drains what leaves: in-flight
requests finish on the old release, new ones go to the new. After `drain_s` the old slot goes to
maintenance; its container stays warm for `keep_warm_s`, so a rollback to it is again one runtime-API call.

Side effects are injected (`Hooks`): how a release is prepared (its image and golden cases), admitted and
recorded; the clock and sleeping.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpack.deploy import haproxy
from modelpack.deploy.docker import DockerSite, ReleaseContainer
from modelpack.deploy.state import EnvState
from modelpack.errors import DeployError


@dataclass(frozen=True)
class Prepared:
    """What starting a release needs: the image the engine pulls (NAME@DIGEST), and how to check it."""

    image: str
    model: str  # the model name its V2 routes use
    version: str
    cases: tuple[Any, ...]  # record.cases.Case


@dataclass(frozen=True)
class Hooks:
    prepare: Callable[[str], Prepared]
    admit: Callable[[str], str]  # digest -> what admitted it (raises DeployError when refused)
    record: Callable[[str, Mapping[str, int], str], None]  # (step action, weights, detail)
    info: Callable[[str], None] = lambda _m: None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Outcome:
    weights: dict[str, int]  # digest -> percent the proxy sends now
    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    changed: bool = False
    notes: tuple[str, ...] = ()


@dataclass
class Memory:
    """What one deployer process remembers between passes: when a release left traffic (keep-warm),
    and the same across deployer processes through the proxy container (load_retired / save_retired)."""

    retired: dict[str, float] = field(default_factory=dict)  # container id -> when it left traffic


def reconcile(site: DockerSite, state: EnvState, proxy_image: str, hooks: Hooks, memory: Memory) -> Outcome:
    wanted = state.weights()
    if not wanted:
        raise DeployError(
            f"{state.env} names no release in {site.repository}: nothing to deploy",
            hint=f"promote a release to it first: modelpack promote {site.repository}:VERSION {state.env}",
        )
    notes: list[str] = []
    proxy, _created = site.ensure_proxy(proxy_image, hooks.info)
    if not memory.retired:  # another process (an earlier `deploy`) may have retired releases
        memory.retired.update(site.load_retired(proxy))
    containers = site.releases()
    for rc in containers:
        if not rc.running and rc.digest in wanted:
            hooks.info(f"{rc.name} is not running: replacing it")
            site.stop(rc)
    by_digest: dict[str, ReleaseContainer] = {}
    extras: list[ReleaseContainer] = []  # a second container of one release (two deployers at once)
    for rc in (c for c in containers if c.running):
        if rc.digest in by_digest:
            extras.append(rc)
        else:
            by_digest[rc.digest] = rc
    started: list[str] = []
    for digest in wanted:
        if digest in by_digest and _ready(site, by_digest[digest]):
            continue
        # checked each time a release is about to start, never cached: a policy tightened meanwhile holds
        why = hooks.admit(digest)
        notes.append(f"admitted {digest[:19]}: {why}")
        if digest in by_digest:  # running but not ready any more: replaced like a missing one
            site.stop(by_digest.pop(digest))
        by_digest[digest] = _start(site, digest, hooks)
        started.append(digest)
    servers = site.servers(proxy)
    live = [*by_digest.values(), *extras]
    commands, changed = _routing(servers, {by_digest[d]: w for d, w in wanted.items()}, live)
    leaving = [rc for rc in by_digest.values() if rc.digest not in wanted] + extras
    if changed:
        site.admin(proxy, commands)
        now = hooks.clock()
        for rc in leaving:
            memory.retired.setdefault(rc.id, now)
        action = "weight" if state.canary is not None else "switch"
        hooks.record(action, wanted, _describe(wanted, state))
        hooks.info(f"proxy: {_describe(wanted, state)}")
    before = dict(memory.retired)
    stopped = _retire(site, proxy, leaving, memory, hooks)
    if memory.retired != before or changed:
        site.save_retired(proxy, memory.retired)
    return Outcome(dict(wanted), tuple(started), tuple(stopped), changed or bool(started), tuple(notes))


def _ready(site: DockerSite, rc: ReleaseContainer) -> bool:
    try:
        return site.http(rc, "GET", "/v2/health/ready")[0] == 200
    except OSError:
        return False


def _start(site: DockerSite, digest: str, hooks: Hooks) -> ReleaseContainer:
    prepared = hooks.prepare(digest)
    rc = site.start_release(digest, prepared.image, hooks.info)
    timeout = site.spec.ready_timeout_s
    deadline = time.monotonic() + timeout
    while True:
        if _ready(site, rc):
            break
        if not site.alive(rc):
            logs = site.logs(rc)
            site.stop(rc)
            raise DeployError(
                f"{prepared.version} ({digest[:19]}) exited before it was ready; nothing was switched and "
                f"what ran keeps serving; last logs: {_tail(logs)}"
            )
        if time.monotonic() >= deadline:
            logs = site.logs(rc)
            site.stop(rc)
            raise DeployError(
                f"{prepared.version} ({digest[:19]}) was not ready within {timeout:g} s; nothing was "
                "switched "
                f"and what ran keeps serving; last logs: {_tail(logs)}",
                hint="raise it with `modelpack env set ... --ready-timeout 5m` if the model loads slowly",
            )
        hooks.sleep(0.2)
    failed = _golden(site, rc, prepared)
    if failed:
        site.stop(rc)
        raise DeployError(
            f"{prepared.version} ({digest[:19]}) is ready but failed its golden cases ({failed}); "
            "nothing was "
            "switched and what ran keeps serving"
        )
    hooks.info(
        f"{prepared.version} is ready"
        + (f"; {len(prepared.cases)} golden cases answered" if prepared.cases else "")
    )
    return rc


def _golden(site: DockerSite, rc: ReleaseContainer, prepared: Prepared) -> str:
    from modelpack.testing.cases import run_cases

    def infer(body: dict[str, Any]) -> tuple[int, Any]:
        status, raw = site.http(rc, "POST", f"/v2/models/{prepared.model}/infer", json.dumps(body).encode())
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    results = run_cases(prepared.cases, infer)
    bad = [r for r in results if not r.passed]
    return "; ".join(f"{r.name}: {'; '.join(r.problems)[:200]}" for r in bad[:3])


def _routing(
    servers: Mapping[str, haproxy.Server],
    wanted: Mapping[ReleaseContainer, int],
    running: Any,
) -> tuple[list[str], bool]:
    """Runtime-API commands that give each wanted container its weight and drain every other slot that
    takes requests; new routes first, so at no instant is every slot draining. A slot keeps pointing at
    its container while that runs (a warm release is rolled back to by weight alone)."""
    at = {(s.address, s.port): s for s in servers.values()}
    live = {(rc.address, rc.port) for rc in running}
    free = [
        slot
        for slot in sorted(servers, key=lambda x: int(x[1:]))
        if (servers[slot].address, servers[slot].port) not in live
    ]
    routes: list[str] = []
    used: set[str] = set()
    for rc, weight in wanted.items():
        server = at.get((rc.address, rc.port))
        if server is not None:
            used.add(server.slot)
            if not (server.ready and server.weight == weight):
                routes += haproxy.reweight(server.slot, weight)
            continue
        if not free:
            raise DeployError(f"the proxy has no free slot ({len(servers)} in use); nothing was switched")
        slot = free.pop(0)
        used.add(slot)
        routes += haproxy.route(slot, rc.address, rc.port, weight)
    drains: list[str] = []
    for s in servers.values():
        if s.slot not in used and s.ready:
            drains += haproxy.drain(s.slot)
    return routes + drains, bool(routes or drains)


def _retire(
    site: DockerSite, proxy: Any, leaving: list[ReleaseContainer], memory: Memory, hooks: Hooks
) -> list[str]:
    """A release out of traffic drains for `drain_s` (its slot then goes to maintenance) and stays warm
    for `keep_warm_s` from when it left traffic; then its container stops."""
    stopped: list[str] = []
    now = hooks.clock()
    servers = {(s.address, s.port): s for s in site.servers(proxy).values()}
    drain, warm = site.spec.drain_s, site.spec.keep_warm_s
    commands: list[str] = []
    for rc in leaving:
        left = memory.retired.setdefault(rc.id, now)
        server = servers.get((rc.address, rc.port))
        if now - left >= max(warm, drain):
            if server is not None:
                commands += haproxy.retire(server.slot)
            stopped.append(rc.id)
        elif server is not None and now - left >= drain and server.state != "maint":
            commands += haproxy.retire(server.slot)
    if commands:
        site.admin(proxy, commands)
    for rc in leaving:
        if rc.id in stopped:
            site.stop(rc)
            left = memory.retired.pop(rc.id, now)
            hooks.info(f"stopped {rc.name}: out of traffic for {now - left:.0f} s (keep-warm {warm:g} s)")
    return [rc.digest for rc in leaving if rc.id in stopped]


def _describe(weights: Mapping[str, int], state: EnvState) -> str:
    parts = []
    for digest, w in weights.items():
        label = (
            state.canary.version if state.canary and state.canary.digest == digest else state.stable_version
        )
        parts.append(f"{w}% to {label or digest[:19]} ({digest[7:19]})")
    return ", ".join(parts)


def _tail(logs: str) -> str:
    lines = [line for line in logs.splitlines() if line.strip()][-3:]
    return " | ".join(lines)[-400:] or "(no output)"
