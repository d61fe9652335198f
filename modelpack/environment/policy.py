"""Promotion policies: what an environment requires of a release before `promote` moves it there.

Kept in the registry beside the environment, never in the release: a release must not certify itself. A
policy is a small artifact attached to the environment's anchor (environment/history.py), as its events are;
the newest by `created` is in force. Setting a policy again writes a new artifact, so who changed the
rules and when stays in the registry too. The public keys a policy names are embedded in it (PEM), so
every machine enforces the same rule without the key files.

Requirements (`--require`, comma-separated):

    test[:RUNTIME][:KEY.pub]     a passing test report for exactly the digest, from RUNTIME (docker or
                                 local) when given, its in-toto evidence signed by KEY when given
    signature:KEY.pub[@DATE]     a release signature over the index digest by KEY; the key is trusted
                                 until DATE (YYYY-MM-DD) when given, after which promote refuses it
    model-signature:KEY.pub      an OpenSSF model signature of the bundle's files by KEY
    provenance[:KEY.pub]         SLSA provenance whose subject is the index (signed by KEY when given)
    sbom                         a CycloneDX SBOM attached to the index

Enforcement: `promote` checks every requirement and refuses when one is unmet; `--force` does not
override a policy (forcing is for the test-report rule of an environment without one). `rollback` checks
and warns but never refuses: in an incident the way back stays open, and its event records what the
target lacked. The checks themselves are injected (`Checkers`), so this module decides and the evidence
modules verify.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpack.environment.history import anchor, ensure_anchor
from modelpack.errors import ContentError, InputError, UsageError
from modelpack.evidence.evidence import attach, read_payload
from modelpack.oci import mediatypes as mt
from modelpack.oci.target import Target
from modelpack.trust.check import Check
from modelpack.trust.keys import PublicKey, load_public

POLICY_TYPE = mt.POLICY_ARTIFACT
POLICY_MEDIA_TYPE = "application/json"
KINDS = ("test", "signature", "model-signature", "provenance", "sbom")
RUNTIMES = ("docker", "local")
MAX_POLICY_BYTES = 256 * 1024
MAX_REQUIREMENTS = 32


@dataclass(frozen=True)
class Requirement:
    kind: str
    runtime: str | None = None  # test only
    keys: tuple[str, ...] = ()  # public PEMs
    until: str | None = None  # signature only: YYYY-MM-DD, last day the key is trusted
    label: str = ""  # as the user wrote it, for messages and `policy show`

    def public_keys(self) -> list[PublicKey]:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        out = []
        for pem in self.keys:
            key = load_pem_public_key(pem.encode())
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ContentError(f"policy requirement {self.label}: embedded key is not ECDSA")
            out.append(PublicKey(key, f"the key of {self.label}"))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "runtime": self.runtime,
            "keys": [{"keyid": k.keyid, "pem": k.pem.decode()} for k in self.public_keys()],
            "until": self.until,
            "label": self.label,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Requirement:
        kind = obj.get("kind")
        if kind not in KINDS:
            raise ContentError(f"policy names an unknown requirement {kind!r}")
        keys = tuple(str(k["pem"]) for k in obj.get("keys") or [])
        req = cls(kind, obj.get("runtime"), keys, obj.get("until"), str(obj.get("label") or kind))
        req.public_keys()  # refuse a damaged key now, not in the middle of a promotion
        return req


@dataclass(frozen=True)
class Policy:
    env: str
    requirements: tuple[Requirement, ...]
    who: str
    created: str
    digest: str | None = field(default=None, compare=False)  # of the stored policy artifact

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "requirements": [r.to_json() for r in self.requirements],
            "who": self.who,
            "created": self.created,
        }

    def payload(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


def parse_requirements(
    text: str, *, load_key: Callable[[str], PublicKey] = load_public
) -> tuple[Requirement, ...]:
    """`test:docker,signature:release.pub,provenance,sbom` -> requirements; one clear line per mistake."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError("--require is empty: name at least one of " + ", ".join(KINDS))
    if len(items) > MAX_REQUIREMENTS:
        raise UsageError(f"--require names {len(items)} requirements; at most {MAX_REQUIREMENTS}")
    return tuple(_parse_one(item, load_key) for item in items)


def _parse_one(item: str, load_key: Callable[[str], PublicKey]) -> Requirement:
    kind, _, rest = item.partition(":")
    if kind not in KINDS:
        raise UsageError(f"--require {item!r}: unknown requirement {kind!r}; choose from {', '.join(KINDS)}")
    args = rest.split(":") if rest else []
    runtime = until = None
    key_paths: list[str] = []
    if kind == "test":
        if args and args[0] in RUNTIMES:
            runtime = args.pop(0)
        key_paths = args
    elif kind in ("signature", "model-signature"):
        if len(args) != 1:
            raise UsageError(f"--require {item!r}: {kind} needs one public key, e.g. {kind}:release.pub")
        path, _, until = args[0].partition("@")
        key_paths = [path]
        until = until or None
        if until is not None and kind == "signature":
            try:
                dt.date.fromisoformat(until)
            except ValueError:
                raise UsageError(f"--require {item!r}: {until!r} is not a date (YYYY-MM-DD)") from None
        elif until is not None:
            raise UsageError(f"--require {item!r}: only signature keys take @DATE")
    elif kind == "provenance":
        key_paths = args
    elif args:
        raise UsageError(f"--require {item!r}: sbom takes no argument")
    if len(key_paths) > 1:
        raise UsageError(f"--require {item!r}: one key per requirement; repeat the requirement for another")
    pems = tuple(load_key(p).pem.decode() for p in key_paths if p)
    label = item if not key_paths else item.replace(key_paths[0], Path(key_paths[0]).name)
    return Requirement(kind, runtime, pems, until, label)


def write_policy(target: Target, policy: Policy, name: str | None = None) -> Policy:
    """Stores `policy` as the newest policy of its environment."""
    subject = ensure_anchor(target, policy.env, name)
    annotations = {mt.ANN_CREATED: policy.created, "dev.modelpack.env": policy.env}
    desc = attach(target, subject, POLICY_TYPE, policy.payload(), POLICY_MEDIA_TYPE, annotations)
    return Policy(policy.env, policy.requirements, policy.who, policy.created, desc.digest)


def read_policy(target: Target, env: str, name: str | None = None) -> Policy | None:
    """The policy in force for `env`: the newest by `created`, read and checked from its own payload."""
    subject = anchor(env, name).digest
    found = [d for d in target.referrers(subject, POLICY_TYPE) if d.artifact_type == POLICY_TYPE]
    if not found:
        return None
    newest = max(found, key=lambda d: ((d.annotations or {}).get(mt.ANN_CREATED, ""), d.digest))
    raw = read_payload(target, newest, MAX_POLICY_BYTES)
    try:
        obj = json.loads(raw)
        reqs = obj["requirements"]
        if not isinstance(reqs, list) or len(reqs) > MAX_REQUIREMENTS or obj.get("env") != env:
            raise ContentError(f"the policy of {env} ({newest.digest}) is not for {env} or is too long")
        return Policy(
            env,
            tuple(Requirement.from_json(r) for r in reqs),
            str(obj.get("who") or ""),
            str(obj.get("created") or ""),
            newest.digest,
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ContentError(f"the policy of {env} ({newest.digest}) is malformed: {e}") from None


# A checker: (target, index digest, requirement) -> Check. `Checkers` maps a requirement kind to one.
Checker = Callable[[Target, str, Requirement], Check]


@dataclass(frozen=True)
class Checkers:
    by_kind: Mapping[str, Checker]
    today: Callable[[], dt.date] = dt.date.today

    def evaluate(self, target: Target, digest: str, policy: Policy) -> tuple[Check, ...]:
        return tuple(self._one(target, digest, r) for r in policy.requirements)

    def _one(self, target: Target, digest: str, req: Requirement) -> Check:
        if req.until is not None and dt.date.fromisoformat(req.until) < self.today():
            return Check(
                req.kind,
                False,
                f"{req.label}: the key's trust expired on {req.until}; rotate it with `modelpack policy set`",
            )
        checker = self.by_kind.get(req.kind)
        if checker is None:
            return Check(req.kind, False, f"{req.label}: this modelpack cannot check {req.kind}")
        try:
            found = checker(target, digest, req)
        except (ContentError, InputError) as e:
            found = Check(req.kind, False, e.message)
        # the label the user wrote, so a refusal names the requirement as the policy states it
        return Check(found.kind, found.ok, f"{req.label}: {found.detail}", found.signer, found.evidence)


def unmet(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
