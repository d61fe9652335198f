"""promote and rollback: which release an environment should name, and the checks before it moves.

promote refuses a release with no passing test report attached to exactly its index digest
(`evidence.passing_report`), unless forced with a reason, which is recorded. rollback is the incident tool:
it goes back to what the environment ran (without a version, to what it named before its last recorded
move), checks no report and says so. A version the environment never ran is no rollback but a promotion
under another name: refused unless `--force --reason` (recorded as forced), and then held to the policy as
promote holds it. The move itself (retag, event, race settlement) is `move.move`, shared by both.

An environment with a policy (environment/policy.py) adds its requirements: promote refuses a release that
lacks one, forced or not; rollback to what ran before warns and goes ahead. The event records what was
checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from modelpack.environment.history import MAX_REASON, Event, History, short
from modelpack.environment.move import MoveResult, Runtime, State, digest_of, move, read_state
from modelpack.environment.place import Place, check_env
from modelpack.environment.policy import Checkers, Policy, read_policy, unmet
from modelpack.errors import NotFoundError, PromotionError, UsageError
from modelpack.evidence.evidence import (
    ANN_CREATED,
    ANN_PASSED,
    failed_summary,
    newest_report,
    passing_report,
    runtime_of,
)
from modelpack.oci.target import RawManifest, Target
from modelpack.release.view import release_version
from modelpack.trust.check import Check
from modelpack.trust.keys import PublicKey

__all__ = ["MoveResult", "Runtime", "canary_in_effect", "check_weight", "promote", "rollback", "verify"]


def promote(
    place: Place,
    ref: str,
    env: str,
    *,
    force: bool = False,
    reason: str = "",
    dry_run: bool = False,
    runtime: Runtime | None = None,
    require_runtime: str | None = None,
    checkers: Checkers | None = None,
    owner_keys: Sequence[PublicKey] = (),
    canary: int | None = None,
) -> MoveResult:
    """Point `env` at the release `ref` (tag or digest) of `place`; refuses one with no passing test report
    attached to exactly its digest (from `require_runtime`, "docker" or "local", when given), unless `force`
    (which needs a `reason` and is recorded), and one that lacks what `env`'s policy requires, forced or
    not. With `canary` (1-99) the tag stays on the stable release and the event sends that percent of
    requests to `ref`; a later plain promote of `ref` finishes the canary, a rollback aborts it."""
    rt = runtime or Runtime()
    check_env(env)
    _check_reason(reason)
    check_weight(canary)
    if force and not reason.strip():
        raise UsageError("--force needs --reason TEXT: a forced promotion is recorded with its reason")
    by_digest = ref.startswith("sha256:")
    # The policy first: the promoter keys it names decide which events are the environment's history.
    policy = read_policy(place.target, env, place.name, owner_keys)
    rt = _as_promoter(rt, policy, env)
    with ThreadPoolExecutor(2) as pool:
        state = pool.submit(read_state, place, env, rt)
        try:
            release = place.target.get_manifest(ref)
        except NotFoundError:
            raise NotFoundError(
                f"cannot promote {place.ref_text(ref)}: it does not exist",
                hint="check the version with `modelpack ls`",
            ) from None
        evidence = _enforce(place, env, ref, release.digest, policy, checkers or _checkers(rt))
        report = passing_report(place.target, release.digest, require_runtime)
        notes: list[str] = []
        if report is None and not force:
            what = f"from the {require_runtime} runtime " if require_runtime else ""
            other = passing_report(place.target, release.digest) if require_runtime else None
            also = f" (there is one from the {runtime_of(other)} runtime)" if other is not None else ""
            newest = newest_report(place.target, release.digest) if other is None else None
            if newest is not None and (newest.annotations or {}).get(ANN_PASSED) != "true":
                also = (
                    f": the newest report ({runtime_of(newest)} runtime, "
                    f"{(newest.annotations or {}).get(ANN_CREATED, 'undated')}) {failed_summary(newest)}"
                )
            raise PromotionError(
                f"refusing to promote {place.ref_text(ref)}: no passing test report {what}is attached to "
                f"{release.digest}{also}",
                hint=f"run `modelpack test{' --runtime ' + require_runtime if require_runtime else ''}` "
                "on it first, or pass --force --reason TEXT",
            )
        if report is None:
            notes.append(f"no passing test report for {short(release.digest)}: forced, recorded as forced")
            builtin = Check("test", False, "no passing test report: forced")
        else:
            found = f"passing test report {short(report.digest)} ({runtime_of(report)} runtime)"
            notes.append(f"{found} found for {short(release.digest)}")
            builtin = Check("test", True, found, evidence=report.digest)
        notes.extend(f"policy: {c.detail}" for c in evidence)
        version = _version_of(release, None if by_digest else ref)
        current = state.result()
        if current.current is None:
            _refuse_case_twin(place, env)
    evidence = (builtin, *evidence)
    if canary is not None:
        _check_canary(place, env, current, release.digest)
        notes.append(f"canary: {canary}% of requests to {version}, the rest to what {env} names")
        action = "canary"
        return move(
            place, env, release, version, action, reason, force, dry_run, rt, notes, current, evidence, canary
        )
    return move(place, env, release, version, "promote", reason, force, dry_run, rt, notes, current, evidence)


def check_weight(weight: int | None) -> None:
    if weight is not None and not 1 <= weight <= 99:
        raise UsageError(
            f"--canary {weight}: a canary weight is a percent from 1 to 99",
            hint="promote without --canary to send every request to the release",
        )


def _check_canary(place: Place, env: str, state: State, digest: str) -> None:
    if state.current is None:
        raise PromotionError(
            f"{place.ref_text(env)} does not exist: a canary needs a stable release beside it",
            hint=f"promote a release to {env} first (without --canary)",
        )
    if state.current.digest == digest:
        raise PromotionError(
            f"{env} already names {short(digest)}: a canary of it would split traffic with itself",
            hint="promote another release with --canary",
        )


def canary_in_effect(history: History) -> Event | None:
    """The canary event in effect, when the newest event is one (a promote, rollback or abort ends it)."""
    head = history.head
    return head if head is not None and head.action == "canary" else None


def _as_promoter(rt: Runtime, policy: Policy | None, env: str) -> Runtime:
    """`rt` reading history through the promoter keys `policy` names; refuses a move it could not sign
    with one of them (its event would never count: the environment would look moved outside modelpack)."""
    keys = policy.promoter_keys() if policy is not None else ()
    if not keys:
        return rt
    ids = {k.keyid for k in keys}
    if rt.key is None or rt.key.public.keyid not in ids:
        given = f"the key given ({rt.key.public.keyid[:12]}) is not one" if rt.key else "no --key was given"
        named = ", ".join(sorted(i[:12] for i in ids))
        raise PromotionError(
            f"{env}'s policy requires moves signed by a promoter key ({named}); {given}; nothing was changed",
            hint="pass --key with a promoter's private key",
        )
    return replace(rt, promoters=keys)


def _enforce(
    place: Place, env: str, ref: str, digest: str, policy: Policy | None, checkers: Checkers
) -> tuple[Check, ...]:
    if policy is None:
        return ()
    checks = checkers.evaluate(place.target, digest, policy)
    failed = unmet(checks)
    if failed:
        raise PromotionError(
            f"refusing to promote {place.ref_text(ref)} to {env}: its policy requires what it lacks: "
            + "; ".join(c.detail for c in failed),
            hint=f"see `modelpack verify {place.ref_text(ref)}` and `modelpack policy show {place.display} "
            f"{env}`; --force does not override a policy",
        )
    return checks


def _checkers(rt: Runtime) -> Checkers:
    from modelpack.environment.checks import default_checkers

    # "today" from the injected clock, so a key's trust expiring is testable without waiting for it
    return default_checkers(lambda: dt.datetime.fromtimestamp(rt.clock(), dt.UTC).date())


def rollback(
    place: Place,
    env: str,
    version: str | None = None,
    *,
    reason: str = "",
    dry_run: bool = False,
    force: bool = False,
    runtime: Runtime | None = None,
    checkers: Checkers | None = None,
    owner_keys: Sequence[PublicKey] = (),
) -> MoveResult:
    """Point `env` back at `version`, or without one at what it named before its last recorded move. The
    policy of `env` is checked and its unmet requirements said, never enforced: except for a `version`
    `env` never ran, which needs `force` (and a reason) and meets the policy as a promotion would."""
    rt = runtime or Runtime()
    check_env(env)
    _check_reason(reason)
    if force and not reason.strip():
        raise UsageError("--force needs --reason TEXT: a forced rollback is recorded with its reason")
    notes = ["rollback checks no test report: it is the incident tool"]
    policy = read_policy(place.target, env, place.name, owner_keys)
    rt = _as_promoter(rt, policy, env)
    if version is None:
        state = read_state(place, env, rt)
        aborted = _abort(place, env, state, reason, dry_run, rt, notes)
        if aborted is not None:
            return aborted
    with ThreadPoolExecutor(2) as pool:
        if version is None:
            release, label, why = _previous(place, env, state)
            notes.append(why)
        else:
            reading = pool.submit(read_state, place, env, rt)
            tagged = pool.submit(_get, place.target, version)
            state = reading.result()
            release, label = _recorded(place, env, version, state, tagged.result(), notes)
    if version is not None and not _ran(state, release.digest):
        return _forward(
            place, env, version, release, label, policy, reason, force, dry_run, rt, state, checkers
        )
    evidence: tuple[Check, ...] = ()
    if policy is not None:
        # the model signature is checked by rehashing every layer: minutes for a large model, so the
        # incident tool leaves it to `verify` and says so
        slow = [r for r in policy.requirements if r.kind == "model-signature"]
        notes.extend(
            f"note: {r.label} not checked by rollback (it rereads every layer); run `modelpack verify`"
            for r in slow
        )
        quick = replace(policy, requirements=tuple(r for r in policy.requirements if r not in slow))
        evidence = (checkers or _checkers(rt)).evaluate(place.target, release.digest, quick)
        notes.extend(
            f"warning: {env}'s policy is not met by the target; going ahead, rollback never refuses: "
            f"{c.detail}"
            for c in unmet(evidence)
        )
    return move(place, env, release, label, "rollback", reason, False, dry_run, rt, notes, state, evidence)


def _abort(
    place: Place, env: str, state: State, reason: str, dry_run: bool, rt: Runtime, notes: list[str]
) -> MoveResult | None:
    """A rollback while a canary is in effect aborts it: every request goes back to the stable release,
    which the tag never stopped naming; None when no canary is in effect."""
    canary = canary_in_effect(state.history)
    if canary is None or state.current is None or canary.from_digest != state.current.digest:
        return None
    notes.append(f"aborting the canary of {canary.version} ({canary.weight}%): every request to the stable")
    stable = state.current
    label = _version_of(stable, short(stable.digest))
    return move(place, env, stable, label, "abort", reason, False, dry_run, rt, notes, state)


def _ran(state: State, digest: str) -> bool:
    return any(e.to_digest == digest for e in state.history.chain)


def _forward(
    place: Place,
    env: str,
    version: str,
    release: RawManifest,
    label: str,
    policy: Policy | None,
    reason: str,
    force: bool,
    dry_run: bool,
    rt: Runtime,
    state: State,
    checkers: Checkers | None,
) -> MoveResult:
    """`rollback ENV VERSION` to a release ENV never ran: a promotion by another name, so it meets what a
    forced promotion meets (a reason, recorded as forced; the policy, which --force does not override)."""
    if not force:
        raise PromotionError(
            f"refusing to roll {env} back to {version}: {env} never ran it ({short(release.digest)}), "
            "so this is no rollback but an untested move; nothing was changed",
            hint=f"promote it (`modelpack promote {place.ref_text(version)} {env}` checks its test report "
            f"and {env}'s policy), or pass --force --reason TEXT (recorded; the policy still applies)",
        )
    evidence = _enforce(place, env, version, release.digest, policy, checkers or _checkers(rt))
    report = passing_report(place.target, release.digest)
    builtin = (
        Check("test", True, f"passing test report {short(report.digest)}", evidence=report.digest)
        if report is not None
        else Check("test", False, "no passing test report: forced")
    )
    notes = [
        f"warning: {env} never ran {version}: forced with a reason, recorded as forced",
        *(f"policy: {c.detail}" for c in evidence),
    ]
    evidence = (builtin, *evidence)
    return move(place, env, release, label, "rollback", reason, True, dry_run, rt, notes, state, evidence)


def undo_stack(history: History) -> list[Event]:
    """The environment's releases as an undo stack, replayed from the events in effect: a promote (or a
    rollback to a release that is not the one below the top) pushes; a rollback to the release below the
    top pops. So a second rollback goes further back, never back to the release just rolled away from."""
    stack: list[Event] = []
    for e in history.moves:
        if e.action == "rollback" and len(stack) >= 2 and stack[-2].to_digest == e.to_digest:
            stack.pop()
        else:
            stack.append(e)
    return stack


def _previous(place: Place, env: str, state: State) -> tuple[RawManifest, str, str]:
    if state.current is None:
        raise PromotionError(f"{place.ref_text(env)} does not exist: nothing to roll back")
    stack = undo_stack(state.history)
    if not stack or stack[-1].to_digest != state.current.digest:
        raise PromotionError(
            f"no recorded event moved {env} to its current {short(state.current.digest)}: "
            "cannot tell what came before; nothing was changed",
            hint=f"name the version: modelpack rollback {place.display} {env} VERSION",
        )
    top = stack[-1]
    if len(stack) < 2:
        raise PromotionError(
            f"{env} named nothing before {top.version} ({top.action} {top.when}): nothing to roll back to",
            hint=f"name a version: modelpack rollback {place.display} {env} VERSION",
        )
    below = stack[-2]
    try:
        release = place.target.get_manifest(below.to_digest)
    except NotFoundError:
        raise PromotionError(
            f"the release {env} named before ({short(below.to_digest)}) is gone from {place.display}; "
            "nothing was changed",
            hint=f"name a version that exists: modelpack rollback {place.display} {env} VERSION",
        ) from None
    why = (
        f"undoing the {top.action} of {top.version} ({top.when}): back to {below.version}, in effect "
        f"before it since {below.when}"
    )
    return release, _version_of(release, below.version), why


def _get(target: Target, ref: str) -> RawManifest | None:
    try:
        return target.get_manifest(ref)
    except NotFoundError:
        return None


def _recorded(
    place: Place, env: str, version: str, state: State, tagged: RawManifest | None, notes: list[str]
) -> tuple[RawManifest, str]:
    """`rollback ENV VERSION` goes to the digest ENV's history recorded for VERSION, not to whatever the
    version tag names today (it may have been overwritten); a version ENV never ran is taken from its tag."""
    ran = next((e for e in reversed(state.history.moves) if e.version == version), None)
    if ran is None:
        if tagged is None:
            raise PromotionError(
                f"cannot roll {env} back to {version}: {place.ref_text(version)} does not exist and {env} "
                "never ran it; nothing was changed",
                hint=f"see `modelpack history {place.display} {env}` for what it ran",
            )
        return tagged, _version_of(tagged, version)
    try:
        release = place.target.get_manifest(ran.to_digest)
    except NotFoundError:
        raise PromotionError(
            f"cannot roll {env} back to {version}: the release it ran ({short(ran.to_digest)}) is gone from "
            f"{place.display}; nothing was changed",
            hint=f"see `modelpack history {place.display} {env}`",
        ) from None
    if tagged is None:
        notes.append(f"note: the tag {version} no longer exists; rolling back to the {version} {env} ran")
    elif tagged.digest != ran.to_digest:
        notes.append(
            f"note: the tag {version} now names {short(tagged.digest)}; rolling back to "
            f"{short(ran.to_digest)}, "
            f"the {version} that {env} ran ({ran.action} {ran.when})"
        )
    notes.append(f"target: {version} ({short(ran.to_digest)}), which {env} ran since {ran.when}")
    return release, version


def _version_of(release: RawManifest, fallback: str | None) -> str:
    return release_version(release) or fallback or short(release.digest)


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON:
        raise UsageError(f"--reason is {len(reason)} characters long; keep it under {MAX_REASON}")


def _refuse_case_twin(place: Place, env: str) -> None:
    """A first promotion to `prod` next to an older `Prod` would make two environments read as one."""
    twins = [t for t in place.target.list_tags() if t.lower() == env and t != env]
    if twins:
        raise UsageError(
            f"environment {env!r} differs only in case from the existing {twins[0]!r}",
            hint=f"promote to {twins[0]!r}, or retire it first",
        )


def verify(place: Place, env: str) -> str | None:
    """What the environment tag names now (its digest), read from the target."""
    return digest_of(place.target, env)
