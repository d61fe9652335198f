"""Promotion policies: what an environment requires of a release before `promote` moves it there.

Kept in the registry beside the environment, never in the release: a release must not certify itself. A
policy is a small artifact attached to the environment's anchor (environment/history.py), as its events are.
Setting a policy again writes a new artifact that names the one it read as in force (`previous`), so the
policies form a chain and its head is in force (`_head`): a writer-chosen `created` decides only between
two that name the same predecessor, and a policy dated 9999 is replaced by the next `policy set`, which
names it. `policy set` reads the policy in force back and fails when it is not the one it wrote. A policy
requiring nothing never counts. Who changed the rules and when stays in the registry too.

Anyone with push rights can still write a policy that heads the chain until the next `policy set`. An
owner key closes that: `policy set --key OWNER.key` signs the policy (a DSSE envelope), and a reader
given the owner's public key out of band (`--policy-key`, $MODELPACK_POLICY_KEY) counts only policies it
verifies, and refuses to promote when none is. The public keys a policy names are embedded in it (PEM), so
every machine enforces the same rule without the key files.

Requirements (`--require`, comma-separated):

    test[:RUNTIME][:MIN...][:KEY.pub]
                                 a passing test report for exactly the digest, from RUNTIME (docker or
                                 local) when given, its in-toto evidence signed by KEY when given; the
                                 minimums a release cannot lower by declaring less (each repeatable
                                 where it makes sense): cases=N (at least N golden cases passed),
                                 gate=METRIC (a passing gate on METRIC), gate=METRIC>=N (one whose
                                 value also meets N: gate=measured.f1_macro>=0.9 holds the served
                                 model to 0.9 whatever gate the release declares),
                                 cases-digest=sha256:HEX (the cases file the run read, as the
                                 report's casesDigest says)
    signature:KEY.pub[@DATE]     a release signature over the index digest by KEY; the key is trusted
                                 until DATE (YYYY-MM-DD) when given, after which promote refuses it
    model-signature:KEY.pub      an OpenSSF model signature of the bundle's files by KEY
    provenance[:KEY.pub]         SLSA provenance whose subject is the index (signed by KEY when given)
    sbom                         a CycloneDX SBOM attached to the index
    promoter:KEY.pub             promotions and rollbacks of the environment are signed with KEY
                                 (`promote --key`); only events a promoter key signed are its history

Enforcement: `promote` checks every requirement and refuses when one is unmet; `--force` does not
override a policy (forcing is for the test-report rule of an environment without one). `rollback` checks
and warns but never refuses: in an incident the way back stays open, and its event records what the
target lacked. The checks themselves are injected (`Checkers`), so this module decides and the evidence
modules verify.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelpack.environment.history import anchor, ensure_anchor
from modelpack.errors import ContentError, InputError, NotFoundError, UsageError
from modelpack.evidence.evidence import attach, read_layer
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Target
from modelpack.trust.check import Check
from modelpack.trust.dsse import open_envelope, seal
from modelpack.trust.keys import PrivateKey, PublicKey, load_public

POLICY_TYPE = mt.POLICY_ARTIFACT
POLICY_MEDIA_TYPE = "application/json"
KINDS = ("test", "signature", "model-signature", "provenance", "sbom", "promoter")
RUNTIMES = ("docker", "local")
MAX_POLICY_BYTES = 256 * 1024
MAX_REQUIREMENTS = 32
MAX_POLICIES = 1000  # every `policy set` ever: read at each promote, so bounded


@dataclass(frozen=True)
class Requirement:
    kind: str
    runtime: str | None = None  # test only
    keys: tuple[str, ...] = ()  # public PEMs
    until: str | None = None  # signature only: YYYY-MM-DD, last day the key is trusted
    label: str = ""  # as the user wrote it, for messages and `policy show`
    min_cases: int | None = None  # test only: the minimums the run must show, whatever the release declares
    gates: tuple[str, ...] = ()  # test only: metric names that must have a passing gate
    cases_digest: str | None = None  # test only: sha256 of the cases file the run read

    @property
    def minimums(self) -> bool:
        return self.min_cases is not None or bool(self.gates) or self.cases_digest is not None

    def shortfalls(self, report: Mapping[str, Any]) -> list[str]:
        """What a test report (`TestReport.to_json()`, from signed evidence) lacks of this requirement's
        minimums; empty when it meets them all."""
        out = []
        cases = [c for c in report.get("cases") or [] if isinstance(c, dict)]
        passed = sum(1 for c in cases if c.get("passed") is True)
        if self.min_cases is not None and passed < self.min_cases:
            out.append(f"{passed} golden case(s) passed, at least {self.min_cases} required")
        gated: dict[str, list[float]] = {}
        for g in report.get("gates") or []:
            if isinstance(g, dict) and g.get("passed") is True:
                value = g.get("value")
                values = gated.setdefault(_gate_metric(str(g.get("gate"))), [])
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values.append(float(value))
        for wanted in self.gates:
            metric, op, threshold = _gate_minimum(wanted)
            if metric not in gated:
                out.append(f"no passing gate on {metric}")
            elif op and not any(_meets(v, op, threshold) for v in gated[metric]):
                shown = ", ".join(f"{v:g}" for v in gated[metric]) or "no value"
                out.append(f"{metric} is {shown} in the report; the policy requires {op} {threshold:g}")
        if self.cases_digest is not None and report.get("casesDigest") != self.cases_digest:
            ran = report.get("casesDigest") or "not recorded"
            out.append(f"the cases file run was {ran}, not {self.cases_digest}")
        return out

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
        out: dict[str, Any] = {
            "kind": self.kind,
            "runtime": self.runtime,
            "keys": [{"keyid": k.keyid, "pem": k.pem.decode()} for k in self.public_keys()],
            "until": self.until,
            "label": self.label,
        }
        if self.minimums:  # only then, so policies without minimums keep their bytes
            out.update(
                {"minCases": self.min_cases, "gates": list(self.gates), "casesDigest": self.cases_digest}
            )
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Requirement:
        kind = obj.get("kind")
        if kind not in KINDS:
            raise ContentError(f"policy names an unknown requirement {kind!r}")
        keys = tuple(str(k["pem"]) for k in obj.get("keys") or [])
        min_cases = obj.get("minCases")
        gates = obj.get("gates") or []
        digest = obj.get("casesDigest")
        if (
            (min_cases is not None and (not isinstance(min_cases, int) or isinstance(min_cases, bool)))
            or not isinstance(gates, list)
            or not all(isinstance(g, str) for g in gates)
            or (digest is not None and not _DIGEST.fullmatch(str(digest)))
        ):
            raise ContentError(f"policy requirement {kind}: malformed minimums")
        req = cls(
            kind,
            obj.get("runtime"),
            keys,
            obj.get("until"),
            str(obj.get("label") or kind),
            min_cases,
            tuple(gates),
            digest,
        )
        req.public_keys()  # refuse a damaged key now, not in the middle of a promotion
        return req


@dataclass(frozen=True)
class Policy:
    env: str
    requirements: tuple[Requirement, ...]
    who: str  # as the writer claims it: only `signer` (checked against an owner key) is proof
    created: str
    digest: str | None = field(default=None, compare=False)  # of the stored policy artifact
    previous: str | None = None  # digest of the policy in force when this one was set
    signer: str | None = field(default=None, compare=False)  # keyid of the owner key that verified it
    claimed_signer: str | None = field(default=None, compare=False)  # keyid the envelope names, unchecked

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "requirements": [r.to_json() for r in self.requirements],
            "who": self.who,
            "created": self.created,
            "previous": self.previous,
        }

    def payload(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    def promoter_keys(self) -> tuple[PublicKey, ...]:
        return tuple(k for r in self.requirements if r.kind == "promoter" for k in r.public_keys())


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
    min_cases: int | None = None
    gates: list[str] = []
    cases_digest: str | None = None
    if kind == "test":
        if args and args[0] in RUNTIMES:
            runtime = args.pop(0)
        for arg in _rejoin_digests(args):
            name, eq, value = arg.partition("=")
            if not eq:
                key_paths.append(arg)
            elif name == "cases" and value.isdigit() and int(value) > 0:
                min_cases = int(value)
            elif name == "gate" and _GATE_MINIMUM.fullmatch(value):
                gates.append(value)
            elif name == "cases-digest" and _DIGEST.fullmatch(_with_algorithm(value)):
                cases_digest = _with_algorithm(value)
            else:
                raise UsageError(
                    f"--require {item!r}: {arg!r} is not a test minimum; use cases=N, gate=METRIC, "
                    "gate=METRIC>=N (e.g. gate=measured.f1_macro>=0.9) or cases-digest=sha256:HEX"
                )
    elif kind in ("signature", "model-signature", "promoter"):
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
        if not path:
            raise UsageError(f"--require {item!r}: {kind} needs one public key, e.g. {kind}:release.pub")
    elif kind == "provenance":
        key_paths = args
    elif args:
        raise UsageError(f"--require {item!r}: sbom takes no argument")
    if len(key_paths) > 1:
        raise UsageError(f"--require {item!r}: one key per requirement; repeat the requirement for another")
    pems = tuple(load_key(p).pem.decode() for p in key_paths if p)
    label = item if not key_paths else item.replace(key_paths[0], Path(key_paths[0]).name)
    return Requirement(kind, runtime, pems, until, label, min_cases, tuple(gates), cases_digest)


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_METRIC = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")


def _rejoin_digests(args: list[str]) -> list[str]:
    """`cases-digest=sha256` and the hex after it were split at the colon like every argument: joined."""
    out: list[str] = []
    for arg in args:
        if out and out[-1].endswith("=sha256") and re.fullmatch(r"[0-9a-f]{64}", arg):
            out[-1] += ":" + arg
        else:
            out.append(arg)
    return out


def _with_algorithm(value: str) -> str:
    return value if ":" in value else f"sha256:{value}"  # a bare sha256sum is accepted too


_GATE_MINIMUM = re.compile(
    r"(?P<metric>[A-Za-z_][A-Za-z0-9_.\-]{0,127})(?:(?P<op>>=|<=|>|<|==)(?P<n>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?"
)


def _gate_minimum(text: str) -> tuple[str, str, float]:
    """`measured.f1_macro>=0.9` -> (metric, op, threshold); a bare METRIC has op "" (any passing gate):
    with a threshold, a release cannot satisfy the policy by declaring a lax gate of its own."""
    m = _GATE_MINIMUM.fullmatch(text)
    if m is None or not m.group("op"):
        return _gate_metric(text), "", 0.0
    return m.group("metric"), m.group("op"), float(m.group("n"))


def _meets(value: float, op: str, threshold: float) -> bool:
    from modelpack.packfile.schema import GATE_OPS  # the gates' own comparison; only a threshold pays for it

    return GATE_OPS[op](value, threshold)


def _gate_metric(text: str) -> str:
    """The metric a gate text (`f1_macro >= 0.85`) is on."""
    m = _METRIC.match(text.strip())
    return m.group(0) if m else ""


def write_policy(
    target: Target, policy: Policy, name: str | None = None, key: PrivateKey | None = None
) -> Policy:
    """Stores `policy` (signed by the owner's `key` when given: a DSSE envelope over its JSON)."""
    subject = ensure_anchor(target, policy.env, name)
    annotations = {mt.ANN_CREATED: policy.created, "dev.modelpack.env": policy.env}
    if key is None:
        desc = attach(target, subject, POLICY_TYPE, policy.payload(), POLICY_MEDIA_TYPE, annotations)
    else:
        envelope = json.dumps(seal(policy.payload(), key, POLICY_TYPE), sort_keys=True).encode()
        annotations[mt.ANN_SIGNER] = key.public.keyid
        desc = attach(target, subject, POLICY_TYPE, envelope, mt.DSSE_ENVELOPE, annotations)
    signer = key.public.keyid if key is not None else None
    return replace(policy, digest=desc.digest, signer=signer, claimed_signer=signer)


def read_policy(
    target: Target, env: str, name: str | None = None, owner_keys: Sequence[PublicKey] = ()
) -> Policy | None:
    """The policy in force for `env`: the head of the chain policies form by naming the one they replace
    (module doc). With `owner_keys`, only policies one of them signed count, and finding none is an error
    (fail closed), not "no policy"."""
    subject = anchor(env, name).digest
    found = [d for d in target.referrers(subject, POLICY_TYPE) if d.artifact_type == POLICY_TYPE]
    if len(found) > MAX_POLICIES:
        raise ContentError(f"{env} lists {len(found)} policies, over the {MAX_POLICIES} this tool reads")
    read = [_read_one(target, env, d, owner_keys) for d in {d.digest: d for d in found}.values()]
    counted = [p for p in read if isinstance(p, Policy)]
    if owner_keys and not counted:
        ids = ", ".join(k.keyid[:12] for k in owner_keys)
        why = "; ".join(str(x) for x in read if isinstance(x, str))[:500]
        raise ContentError(
            f"no policy of {env} is signed by the owner key ({ids}): promote refuses"
            + (f" ({why})" if why else ""),
            hint="the owner sets one: modelpack policy set REPO ENV --require ... --key OWNER.key",
        )
    if not counted:
        if read:  # every stored policy is malformed: refusing is safer than reading "no policy"
            raise ContentError(f"the policies of {env} are all malformed: {str(read[0])[:300]}")
        return None
    return _head(counted)


def _read_one(target: Target, env: str, d: Descriptor, owner_keys: Sequence[PublicKey]) -> Policy | str:
    """The policy stored under `d`, or why it does not count."""
    try:
        media_type, raw = read_layer(target, d, MAX_POLICY_BYTES)
        signer = claimed = None
        if media_type == mt.DSSE_ENVELOPE:
            opened = open_envelope(raw, owner_keys)
            if opened.payload_type != POLICY_TYPE:
                return f"{d.digest}: an envelope of {opened.payload_type!r}"
            raw = opened.payload
            signer = opened.verified_by[0] if opened.verified_by else None
            claimed = opened.keyids[0] if opened.keyids else None
        if owner_keys and signer is None:
            return f"{d.digest} is not signed by the owner key"
        obj = canonical.loads(raw)
        reqs = obj["requirements"]
        if not isinstance(reqs, list) or len(reqs) > MAX_REQUIREMENTS or obj.get("env") != env:
            return f"{d.digest} is not for {env} or is too long"
        if not reqs:  # an empty policy would let anything through: it never counts
            return f"{d.digest} requires nothing"
        previous = obj.get("previous")
        if previous is not None and not (isinstance(previous, str) and digests.is_digest(previous)):
            return f"{d.digest}: previous {previous!r} is not a digest"
        return Policy(
            env,
            tuple(Requirement.from_json(r) for r in reqs),
            str(obj.get("who") or ""),
            str(obj.get("created") or ""),
            d.digest,
            previous,
            signer,
            claimed,
        )
    except NotFoundError:
        return f"{d.digest} is listed but gone"
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        return f"{d.digest} is malformed: {e}"
    except (ContentError, InputError) as e:
        return f"{d.digest}: {e.message}"


def _head(policies: Sequence[Policy]) -> Policy:
    """The policy in force: the end of the longest chain of policies, each naming the one it replaced
    (the one `policy set` read as in force), ties to the newest `created` (then the digest). A link is
    followed whatever the dates say (the writer read that policy as in force; a predecessor dated 9999 must
    not break the chain of the next honest `policy set`). So `created` decides only between chains of
    one length (policies written before chaining are all of length 1: the newest is in force, as it was),
    and whatever heads the chain, the next `policy set` names it and outranks it."""
    by_digest = {p.digest: p for p in policies}
    depth: dict[str | None, int] = {}
    for p in policies:
        path: list[Policy] = []
        node: Policy | None = p
        while node is not None and node.digest not in depth and node not in path:
            path.append(node)
            parent = by_digest.get(node.previous) if node.previous != node.digest else None
            node = parent
        base = depth.get(node.digest, 0) if node is not None and node not in path else 0
        for n, q in enumerate(reversed(path), start=1):
            depth[q.digest] = base + n
    return max(policies, key=lambda p: (depth[p.digest], p.created, p.digest or ""))


# A checker: (target, index digest, requirement) -> Check. `Checkers` maps a requirement kind to one.
Checker = Callable[[Target, str, Requirement], Check]


@dataclass(frozen=True)
class Checkers:
    by_kind: Mapping[str, Checker]
    today: Callable[[], dt.date] = dt.date.today

    def evaluate(self, target: Target, digest: str, policy: Policy) -> tuple[Check, ...]:
        # `promoter` is about who moves the environment, not about the release: promote checks its key
        return tuple(self._one(target, digest, r) for r in policy.requirements if r.kind != "promoter")

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
