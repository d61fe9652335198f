"""Deployment specs and deployment steps in the registry, as referrers of the environment's anchor
(release/history.py), beside its events and policy.

A spec is in force from the newest by `created` (as a policy is); setting one again writes another, so who
changed how production runs stays recorded. A step is what a target did (a release started, traffic
switched, a canary weight applied, a release refused or stopped): observations, so they stay out of the
event chain that decides what the environment names (a target writing a step can never win a race
against a promote).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from modelpack.deploy.spec import DeploySpec
from modelpack.environment.history import ANN_ENV, anchor, ensure_anchor
from modelpack.errors import ContentError, NotFoundError
from modelpack.evidence.evidence import attach, read_payload
from modelpack.oci import mediatypes as mt
from modelpack.oci.target import Target

SPEC_TYPE = mt.DEPLOY_SPEC_ARTIFACT
STEP_TYPE = mt.DEPLOY_STEP_ARTIFACT
MAX_SPEC_BYTES = 64 * 1024
MAX_STEP_BYTES = 16 * 1024
STEP_ACTIONS = ("deploy", "switch", "weight", "abort", "refused", "stop", "outage")


def write_spec(target: Target, spec: DeploySpec, name: str | None = None) -> DeploySpec:
    subject = ensure_anchor(target, spec.env, name)
    annotations = {mt.ANN_CREATED: spec.created, ANN_ENV: spec.env}
    desc = attach(target, subject, SPEC_TYPE, spec.payload(), "application/json", annotations)
    return DeploySpec.from_json(json.loads(spec.payload()), desc.digest)


def read_spec(target: Target, env: str, name: str | None = None) -> DeploySpec | None:
    """The spec in force for `env` (newest by `created`), or None when none was ever set."""
    found = [d for d in target.referrers(anchor(env, name).digest, SPEC_TYPE) if d.artifact_type == SPEC_TYPE]
    if not found:
        return None
    newest = max(found, key=lambda d: ((d.annotations or {}).get(mt.ANN_CREATED, ""), d.digest))
    raw = read_payload(target, newest, MAX_SPEC_BYTES)
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ContentError(f"the deployment spec of {env} ({newest.digest}) is not JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("env") != env:
        raise ContentError(f"the deployment spec {newest.digest} is not for {env}")
    return DeploySpec.from_json(obj, newest.digest)


@dataclass(frozen=True)
class Step:
    env: str
    action: str  # STEP_ACTIONS
    weights: Mapping[str, int]  # digest -> percent after the step (empty: nothing serves)
    who: str
    when: str
    target: str  # where it ran: "docker unix:///...", "kubernetes DIR"
    detail: str = ""  # why, with numbers (an automatic abort names the error rates and p99s)
    event: str | None = None  # the environment event the step followed
    digest: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "action": self.action,
            "weights": dict(self.weights),
            "who": self.who,
            "when": self.when,
            "target": self.target,
            "detail": self.detail,
            "event": self.event,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], digest: str | None = None) -> Step:
        try:
            weights = {str(k): int(v) for k, v in dict(obj.get("weights") or {}).items()}
            return cls(
                env=str(obj["env"]),
                action=str(obj["action"]),
                weights=weights,
                who=str(obj.get("who") or ""),
                when=str(obj["when"]),
                target=str(obj.get("target") or ""),
                detail=str(obj.get("detail") or "")[:2000],
                event=str(obj["event"]) if obj.get("event") else None,
                digest=digest,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ContentError(f"deployment step {digest} is malformed: {e}") from None


def write_step(target: Target, step: Step, name: str | None = None) -> Step:
    subject = ensure_anchor(target, step.env, name)
    payload = json.dumps(step.to_json(), sort_keys=True, separators=(",", ":")).encode()
    annotations = {mt.ANN_CREATED: step.when, ANN_ENV: step.env, "dev.modelpack.deploy.action": step.action}
    desc = attach(target, subject, STEP_TYPE, payload, "application/json", annotations)
    return Step.from_json(step.to_json(), desc.digest)


def read_steps(target: Target, env: str, name: str | None = None, *, newest: int = 50) -> list[Step]:
    """The newest `newest` steps of `env`, newest first (by their `created` annotation)."""
    listed = [
        d for d in target.referrers(anchor(env, name).digest, STEP_TYPE) if d.artifact_type == STEP_TYPE
    ]
    listed.sort(key=lambda d: ((d.annotations or {}).get(mt.ANN_CREATED, ""), d.digest), reverse=True)
    chosen = listed[:newest]
    if not chosen:
        return []

    def one(d: Any) -> Step | None:
        try:
            obj = json.loads(read_payload(target, d, MAX_STEP_BYTES))
            step = Step.from_json(obj, d.digest)
        except (NotFoundError, ContentError, ValueError, UnicodeDecodeError):
            return None
        return step if step.env == env else None

    with ThreadPoolExecutor(min(8, len(chosen))) as pool:
        return [s for s in pool.map(one, chosen) if s is not None]
