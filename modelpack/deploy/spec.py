"""The deployment spec of an environment: where and how what the environment names runs.

Stored in the registry beside the environment's policy (a referrer of its anchor, newest by `created` in
force; `deploy/stored.py` reads and writes it), so every machine that deploys the environment, and every
manifest written for it, follows one spec. Pure: values in, values out, no I/O.

What runs is always a digest (`deploy/state.py` derives which from the environment's events); the spec
never names a release.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelpack.errors import ContentError, UsageError

TARGETS = ("docker", "kubernetes", "kserve")
STRATEGIES = ("blue-green", "canary")
DEFAULT_STEPS = (10, 50, 100)
MAX_STEPS = 10
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class Bounds:
    """How much worse than stable a canary may be before automatic analysis aborts it.

    error rate: canary <= stable + `max_error_rate_increase` (absolute, 0.01 = one point);
    p99 latency: canary <= stable x `max_p99_ratio` + `p99_slack_s` (the slack keeps a fast stable's
    p99 of a few milliseconds from failing a canary on noise);
    nothing is judged before each side answered `min_requests` in the window."""

    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    p99_slack_s: float = 0.025
    min_requests: int = 20

    def to_json(self) -> dict[str, Any]:
        return {
            "maxErrorRateIncrease": self.max_error_rate_increase,
            "maxP99Ratio": self.max_p99_ratio,
            "p99SlackSeconds": self.p99_slack_s,
            "minRequests": self.min_requests,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Bounds:
        d = cls()
        return cls(
            float(obj.get("maxErrorRateIncrease", d.max_error_rate_increase)),
            float(obj.get("maxP99Ratio", d.max_p99_ratio)),
            float(obj.get("p99SlackSeconds", d.p99_slack_s)),
            int(obj.get("minRequests", d.min_requests)),
        )


@dataclass(frozen=True)
class DeploySpec:
    env: str
    target: str = "docker"
    strategy: str = "blue-green"
    canary_steps: tuple[int, ...] = DEFAULT_STEPS  # percents, ascending, the last 100 (finish)
    pause_s: float = 30.0  # between automatic canary steps
    keep_warm_s: float = 600.0  # how long the previous release keeps running after a switch
    port: int = 8080  # the public port the proxy owns
    address: str = "127.0.0.1"  # where the proxy binds it
    network: str = "host"  # "host", or the name of a Docker bridge network
    proxy_image: str | None = None  # None: the default proxy image (or MODELPACK_PROXY_IMAGE)
    ready_timeout_s: float = 120.0  # a release not ready by then is never switched to
    drain_s: float = 2.0  # how long an old release keeps its in-flight requests after a switch
    replicas: int = 1  # Kubernetes only: the Docker target runs one container per release
    bounds: Bounds = Bounds()
    who: str = ""
    created: str = ""
    digest: str | None = field(default=None, compare=False)  # of the stored spec artifact

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "target": self.target,
            "strategy": self.strategy,
            "canarySteps": list(self.canary_steps),
            "pauseSeconds": self.pause_s,
            "keepWarmSeconds": self.keep_warm_s,
            "port": self.port,
            "address": self.address,
            "network": self.network,
            "proxyImage": self.proxy_image,
            "readyTimeoutSeconds": self.ready_timeout_s,
            "drainSeconds": self.drain_s,
            "replicas": self.replicas,
            "bounds": self.bounds.to_json(),
            "who": self.who,
            "created": self.created,
        }

    def payload(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], digest: str | None = None) -> DeploySpec:
        """A stored spec, checked as `env set` checks one (a spec written by hand is refused the same)."""
        d = cls(env="")
        try:
            spec = cls(
                env=str(obj["env"]),
                target=str(obj.get("target", d.target)),
                strategy=str(obj.get("strategy", d.strategy)),
                canary_steps=tuple(int(x) for x in obj.get("canarySteps", d.canary_steps)),
                pause_s=float(obj.get("pauseSeconds", d.pause_s)),
                keep_warm_s=float(obj.get("keepWarmSeconds", d.keep_warm_s)),
                port=int(obj.get("port", d.port)),
                address=str(obj.get("address", d.address)),
                network=str(obj.get("network", d.network)),
                proxy_image=str(obj["proxyImage"]) if obj.get("proxyImage") else None,
                ready_timeout_s=float(obj.get("readyTimeoutSeconds", d.ready_timeout_s)),
                drain_s=float(obj.get("drainSeconds", d.drain_s)),
                replicas=int(obj.get("replicas", d.replicas)),
                bounds=Bounds.from_json(obj.get("bounds") or {}),
                who=str(obj.get("who") or ""),
                created=str(obj.get("created") or ""),
                digest=digest,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ContentError(f"the deployment spec {digest} is malformed: {e}") from None
        try:
            return check(spec)
        except UsageError as e:
            raise ContentError(f"the deployment spec {digest} is invalid: {e.message}") from None


def check(spec: DeploySpec) -> DeploySpec:
    """One clear line for each value a spec cannot have."""
    if spec.target not in TARGETS:
        raise UsageError(f"--target {spec.target!r}: choose one of {', '.join(TARGETS)}")
    if spec.strategy not in STRATEGIES:
        raise UsageError(f"--strategy {spec.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    steps = spec.canary_steps
    if not steps or len(steps) > MAX_STEPS or any(not 1 <= s <= 100 for s in steps):
        raise UsageError(
            f"--canary-steps {_steps(steps)}: 1 to {MAX_STEPS} percents from 1 to 100, e.g. 10,50,100"
        )
    if list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise UsageError(
            f"--canary-steps {_steps(steps)}: ascending, ending with 100 (the finish), e.g. 10,50,100"
        )
    if not 1 <= spec.port <= 65535:
        raise UsageError(f"--port {spec.port}: a TCP port is 1-65535")
    if not spec.network or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", spec.network):
        raise UsageError(f"--network {spec.network!r}: 'host' or the name of a Docker network")
    if not 1 <= spec.replicas <= 100:
        raise UsageError(f"--replicas {spec.replicas}: 1-100")
    for name, value in (
        ("--pause", spec.pause_s),
        ("--keep-warm", spec.keep_warm_s),
        ("--ready-timeout", spec.ready_timeout_s),
        ("--drain", spec.drain_s),
    ):
        if value < 0 or value > 7 * 86400:
            raise UsageError(f"{name} {value:g}s: from 0 to 7 days")
    b = spec.bounds
    if (
        not 0 <= b.max_error_rate_increase <= 1
        or b.max_p99_ratio < 1
        or b.p99_slack_s < 0
        or b.min_requests < 1
    ):
        raise UsageError(
            "analysis bounds: --max-error-increase 0-1, --max-p99-ratio >= 1, --p99-slack >= 0, "
            "--min-requests >= 1"
        )
    return spec


def _steps(steps: tuple[int, ...]) -> str:
    return ",".join(str(s) for s in steps) or "(empty)"


def parse_duration(text: str, option: str) -> float:
    """`30s`, `10m`, `1.5h`, `250ms`, or plain seconds -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"{option} {text!r}: a duration such as 500ms, 30s, 10m or 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--canary-steps {text!r}: comma-separated percents, e.g. 10,50,100") from None


def updated(spec: DeploySpec, **changes: Any) -> DeploySpec:
    """`spec` with the given fields changed (None leaves a field as it is), checked."""
    return check(replace(spec, **{k: v for k, v in changes.items() if v is not None}))
