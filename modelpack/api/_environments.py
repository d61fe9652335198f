"""`promote`, `rollback` and `history`: environment tags that move only with a recorded event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelpack.environment.history import Event, History, format_when, load_history
from modelpack.environment.move import MoveResult, Runtime, event_json
from modelpack.environment.place import Place, check_env
from modelpack.environment.policy import Policy, parse_requirements, read_policy, write_policy
from modelpack.environment.promote import check_weight, verify
from modelpack.environment.promote import promote as _promote
from modelpack.environment.promote import rollback as _rollback
from modelpack.errors import UsageError
from modelpack.targets import Targets
from modelpack.trust.keys import PublicKey

if TYPE_CHECKING:
    from modelpack.deploy.stored import Step

__all__ = [
    "HistoryResult",
    "LabelResult",
    "MoveResult",
    "NamingResult",
    "PolicyResult",
    "Runtime",
    "archive",
    "history",
    "naming",
    "policy_set",
    "policy_show",
    "promote",
    "rollback",
]


def promote(
    targets: Targets,
    reference: str,
    env: str,
    *,
    force: bool = False,
    reason: str = "",
    dry_run: bool = False,
    runtime: Runtime | None = None,
    require_runtime: str | None = None,
    policy_key: str | None = None,
    key: str | None = None,
    canary: int | None = None,
) -> MoveResult:
    """Point `env` at the release `reference` names; refused without a passing test report for exactly its
    digest (produced by `require_runtime`, "docker" or "local", when given) unless `force` (with a
    `reason`, recorded). `policy_key` (else $MODELPACK_POLICY_KEY): the owner's public key, out of band;
    only policies it signed count. `key`: the promoter's private key; the event is signed with it.
    With `canary` (1-99), that percent of requests goes to it while the tag stays on the stable
    release; a later plain promote finishes the canary, a rollback aborts it."""
    check_env(env)
    check_weight(canary)
    if require_runtime not in (None, "docker", "local"):
        raise UsageError(f"--require-runtime {require_runtime!r}: choose docker or local")
    where = targets.open(reference)
    ref = where.need_ref("promote")
    return _promote(
        Place.of(where),
        ref,
        env,
        force=force,
        reason=reason,
        dry_run=dry_run,
        runtime=signing_runtime(targets, runtime, key),
        require_runtime=require_runtime,
        owner_keys=owner_keys(targets, policy_key),
        canary=canary,
    )


def rollback(
    targets: Targets,
    repository: str,
    env: str,
    version: str | None = None,
    *,
    reason: str = "",
    dry_run: bool = False,
    force: bool = False,
    runtime: Runtime | None = None,
    policy_key: str | None = None,
    key: str | None = None,
) -> MoveResult:
    """Move `env` back to `version`, or to what was in effect before its current release; a version `env`
    never ran needs `force` and a reason, and meets the policy; `key` signs the event (the promoter's
    private key)."""
    check_env(env)
    return _rollback(
        _repository(targets, repository),
        env,
        version,
        reason=reason,
        dry_run=dry_run,
        force=force,
        runtime=signing_runtime(targets, runtime, key),
        owner_keys=owner_keys(targets, policy_key),
    )


@dataclass(frozen=True)
class HistoryEntry:
    event: Event
    in_effect: bool
    current: bool  # the event in effect now, and the tag still names what it put there


@dataclass(frozen=True)
class HistoryResult:
    reference: str
    current: str | None  # the digest the environment tag names now
    entries: tuple[HistoryEntry, ...]  # newest first
    moved_outside: bool  # the tag names something no recorded event put there
    unverified: frozenset[str] = frozenset()  # events no promoter key the policy names signed
    steps: tuple[Step, ...] = ()  # what deployment targets did (switch, weight, refused, abort), newest first

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "movedOutside": self.moved_outside,
            "steps": [{**s.to_json(), "digest": s.digest} for s in self.steps],
            "events": [
                {
                    **event_json(e.event),
                    "status": "in effect"
                    if e.in_effect
                    else ("unverified" if e.event.digest in self.unverified else "superseded"),
                    "signer": e.event.signer,
                    "current": e.current,
                }
                for e in self.entries
            ],
        }


def history(targets: Targets, repository: str, env: str, *, policy_key: str | None = None) -> HistoryResult:
    """`env`'s promotions and rollbacks, newest first, from the registry; marks the current one. When the
    policy names promoter keys, only events they signed are in effect (the rest are "unverified"). With
    them, the newest deployment steps targets recorded (deploy/stored.py)."""
    from modelpack.deploy.stored import read_steps

    check_env(env)
    place = _repository(targets, repository)
    policy = _in_force(place, env, owner_keys(targets, policy_key))  # unreadable: every event listed
    promoters = policy.promoter_keys() if policy is not None else ()
    hist: History = load_history(place.target, env, place.name, promoters)
    current = verify(place, env)
    head = hist.head
    entries = tuple(
        HistoryEntry(
            e,
            in_effect,
            in_effect and head is not None and e.digest == head.digest and e.names == current,
        )
        for e, in_effect in hist.newest_first()
    )
    moved = head is not None and head.names != current
    unverified = frozenset(e.digest for e in hist.unverified if e.digest)
    steps = tuple(read_steps(place.target, env, place.name, newest=20)) if hist.chain else ()
    return HistoryResult(place.ref_text(env), current, entries, moved, unverified, steps)


@dataclass(frozen=True)
class PolicyResult:
    reference: str  # the environment, as the user names it
    env: str
    policy: Policy | None  # None: the environment has no policy (promote needs a passing report only)
    written: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "env": self.env,
            "written": self.written,
            "policyDigest": self.policy.digest if self.policy else None,
            "requirements": [r.to_json() for r in self.policy.requirements] if self.policy else [],
            "who": self.policy.who if self.policy else None,
            "created": self.policy.created if self.policy else None,
            "previous": self.policy.previous if self.policy else None,
            # verified against the owner key given; `claimedSigner` is what the envelope names, unchecked
            "signer": self.policy.signer if self.policy else None,
            "claimedSigner": self.policy.claimed_signer if self.policy else None,
            "ownerKeyChecked": self.owner_checked,
        }

    owner_checked: bool = False  # an owner key was given, so `signer` is a verified keyid


def policy_set(
    targets: Targets,
    repository: str,
    env: str,
    require: str,
    *,
    runtime: Runtime | None = None,
    key: str | None = None,
    policy_key: str | None = None,
) -> PolicyResult:
    """Make `require` (e.g. "test:docker,signature:release.pub,provenance,sbom") what `promote` demands
    of a release before it moves `env`; stored in the registry beside the environment, naming the policy
    it replaces, signed by the owner's private `key` when given. Read back: another policy in force
    afterwards (a race, or one written to outrank it) is an error."""
    from modelpack.errors import RefusedError
    from modelpack.trust.keys import load_private

    rt = runtime or Runtime()
    check_env(env)
    place = _repository(targets, repository)
    requirements = parse_requirements(require)
    signing = load_private(key, env=targets.environ) if key else None
    owners = owner_keys(targets, policy_key) or ((signing.public,) if signing else ())
    current = _in_force(place, env, owners) or (_in_force(place, env, ()) if owners else None)
    previous = current.digest if current else None  # chained, so every reader's head moves to this one
    policy = Policy(env, requirements, rt.who(), format_when(rt.clock()), previous=previous)
    stored = write_policy(place.target, policy, place.name, signing)
    in_force = read_policy(place.target, env, place.name, owners)
    if in_force is None or in_force.digest != stored.digest:
        raise RefusedError(
            f"the policy of {place.ref_text(env)} was written ({stored.digest}) but another is in force: "
            f"{in_force.digest if in_force else 'none'} by {in_force.who if in_force else '-'}",
            hint="someone else set one at the same time, or wrote one to outrank it: see `modelpack policy "
            "show`, then set it again (an owner key, --key, makes policies nobody else can write)",
        )
    return PolicyResult(place.ref_text(env), env, stored, True, bool(owners))


def policy_show(
    targets: Targets, repository: str, env: str, *, policy_key: str | None = None
) -> PolicyResult:
    """The policy in force for `env`, or None; with the owner's public key, only one it signed."""
    check_env(env)
    place = _repository(targets, repository)
    owners = owner_keys(targets, policy_key)
    found = read_policy(place.target, env, place.name, owners)
    return PolicyResult(place.ref_text(env), env, found, False, bool(owners))


POLICY_KEY_ENV = "MODELPACK_POLICY_KEY"


def signing_runtime(targets: Targets, runtime: Runtime | None, key: str | None) -> Runtime | None:
    """The runtime that signs the events it writes with the promoter's `key` (a path, env://NAME or -);
    shared by promote, rollback and deploy, so every event is signed by one rule."""
    if key is None:
        return runtime
    from dataclasses import replace

    from modelpack.trust.keys import load_private

    return replace(runtime or Runtime(), key=load_private(key, env=targets.environ))


def _in_force(place: Place, env: str, owners: Sequence[PublicKey]) -> Policy | None:
    from modelpack.errors import ContentError

    try:
        return read_policy(place.target, env, place.name, owners)
    except ContentError:
        return None  # nothing valid in force (for these keys)


def owner_keys(targets: Targets, given: str | None) -> tuple[PublicKey, ...]:
    """The policy owner's public key: `given` (a path or env://NAME), else $MODELPACK_POLICY_KEY."""
    from modelpack.trust.keys import load_public

    source = given or targets.environ.get(POLICY_KEY_ENV)
    return (load_public(source, env=targets.environ),) if source else ()


def _repository(targets: Targets, text: str) -> Place:
    where = targets.open(text)
    if where.ref is not None and where.kind != "layout":
        raise UsageError(
            f"{text!r} names a release, not a repository",
            hint=f"give the repository alone, e.g. {where.repository}",
        )
    return Place.of(where)


@dataclass(frozen=True)
class LabelResult:
    repository: str
    label: str
    on: bool  # set (True) or cleared
    versions: tuple[tuple[str, str], ...]  # (tag, digest) labelled, in the order asked
    who: str
    when: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "label": self.label,
            "on": self.on,
            "who": self.who,
            "when": self.when,
            "reason": self.reason,
            "versions": [{"tag": t, "digest": d} for t, d in self.versions],
        }


def archive(
    targets: Targets,
    repository: str,
    versions: Sequence[str],
    *,
    reason: str,
    clear: bool = False,
    runtime: Runtime | None = None,
) -> LabelResult:
    """Set (or `clear`) the `archived` label on many versions at once, recorded with who and why; ls and
    the portal show it, prune counts an archived version out of `--keep-last`. Every version is read
    before any is labelled, so a typo labels nothing."""
    from modelpack.environment.actor import who
    from modelpack.errors import NotFoundError
    from modelpack.evidence import labels
    from modelpack.oci.model import Descriptor

    labels.check(labels.ARCHIVED, reason)
    if not versions:
        raise UsageError(
            "name the versions to archive", hint="e.g. modelpack archive REPO 1.0.0 1.1.0 --reason ..."
        )
    rt = runtime or Runtime()
    place = _repository(targets, repository)
    found = []
    for v in dict.fromkeys(versions):
        try:
            raw = place.target.get_manifest(v)
        except NotFoundError:
            raise NotFoundError(f"{place.ref_text(v)} does not exist: nothing was labelled") from None
        found.append((v, Descriptor(raw.media_type, raw.digest, len(raw.raw))))
    actor = rt.actor or who(rt.environ)
    label = labels.Label(labels.ARCHIVED, not clear, actor, format_when(rt.clock()), reason.strip())
    for _, desc in found:
        labels.write(place.target, desc, label)
    return LabelResult(
        place.display, label.name, label.on, tuple((t, d.digest) for t, d in found), label.who, label.when,
        label.reason,
    )  # fmt: skip


@dataclass(frozen=True)
class NamingResult:
    repository: str
    naming: Any  # environment.naming.Naming, or None: the repository declares no rule

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "naming": self.naming.to_json() if self.naming else None}


def naming(
    targets: Targets, repository: str, pattern: str | None = None, *, runtime: Runtime | None = None
) -> NamingResult:
    """The repository's naming rule for version tags; with `pattern`, declare it (push then refuses a tag
    that does not match it in full)."""
    from modelpack.environment import naming as rule
    from modelpack.environment.actor import who

    place = _repository(targets, repository)
    if pattern is None:
        return NamingResult(place.display, rule.read_naming(place.target, place.name))
    rt = runtime or Runtime()
    declared = rule.Naming(rule.check_pattern(pattern), rt.actor or who(rt.environ), format_when(rt.clock()))
    return NamingResult(place.display, rule.write_naming(place.target, declared, place.name))
