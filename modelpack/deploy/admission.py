"""Admission: the Docker target never starts a release whose evidence fails the environment's policy,
checked when it is about to run (as a cluster's admission controller would), not only when it was
promoted: a policy tightened since, or a tag moved outside modelpack, is caught here.

The one exception is the incident path: when the environment's newest move is a rollback to a release
it ran before, that release is admitted although the policy no longer passes, and the admission says so
(the step records it), as `rollback` warns but never refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from modelpack.environment.history import Event, History, short
from modelpack.environment.place import Place
from modelpack.environment.policy import Checkers, read_policy, unmet
from modelpack.errors import DeployError
from modelpack.trust.keys import PublicKey


def admit(
    place: Place,
    env: str,
    digest: str,
    history: History,
    checkers: Checkers | None = None,
    owners: Sequence[PublicKey] = (),
) -> str:
    """Why `digest` may run in `env` (a line for the record); DeployError when it may not. `owners`: the
    policy owner's keys, as promote takes them."""
    policy = read_policy(place.target, env, place.name, owners)
    if policy is None:
        return f"{env} has no policy (promote required a passing test report)"
    if checkers is None:
        from modelpack.environment.checks import default_checkers

        checkers = default_checkers()
    # the model signature rehashes every layer (minutes for a large model): promote checked it; say so
    slow = tuple(r for r in policy.requirements if r.kind == "model-signature")
    quick = replace(policy, requirements=tuple(r for r in policy.requirements if r not in slow))
    checks = checkers.evaluate(place.target, digest, quick)
    failed = unmet(checks)
    skipped = f"; {', '.join(r.label for r in slow)} left to promote and verify" if slow else ""
    if not failed:
        return f"{env}'s policy is met ({', '.join(c.kind for c in checks)}){skipped}"
    ran = _rolled_back_to(history, digest)
    why = "; ".join(c.detail for c in failed)
    if ran is not None:
        return (
            f"incident rollback: {env} ran {short(digest)} before ({ran.action} {ran.when}), admitted "
            "although "
            f"its policy is not met: {why}"
        )
    raise DeployError(
        f"refusing to deploy {place.ref_text(digest)} to {env}: its policy is not met: {why}; nothing was "
        "deployed and what ran keeps serving",
        hint=f"see `modelpack verify {place.ref_text(digest)}` and "
        f"`modelpack policy show {place.display} {env}`",
    )


def _rolled_back_to(history: History, digest: str) -> Event | None:
    """The earlier move to `digest`, when the newest move is a rollback to it; else None."""
    moves = history.moves
    if not moves or moves[-1].action != "rollback" or moves[-1].to_digest != digest:
        return None
    return next((e for e in reversed(moves[:-1]) if e.to_digest == digest), None)
