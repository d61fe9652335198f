"""Moving an environment tag: retag by bytes, record the event, settle a race. Used by promote and rollback.

A move is a retag: the index's exact bytes are PUT under the environment tag (one manifest PUT, no blob
moves, the digest the target reports is compared), so image and bundle move together atomically and the
time does not depend on the model's size. It only uses the Target protocol, so it works the same on a
registry, an `oci:` layout and the local store.

Order of writes, and why it differs from "event first": the tag is PUT *before* the event is written. A
refused tag PUT then leaves nothing behind at all (no event claims a move that never happened, and the
Target protocol has no way to withdraw a referrer); if writing the event fails after the tag moved, the
tag is put back to the bytes it named before and the error says so.

Races. Registries have no compare-and-swap. Each writer reads the head event and the tag, PUTs the tag,
writes its event naming the head it read, then waits a settle time and re-reads the history. The settle
time is `settle_factor` (1.5) times this run's own tag PUT and event write: a competitor that read the same
head did so before our event was visible, so moving at up to 1.5 times our speed its event is visible by
then. `history.resolve` picks one event among those following the same head, deterministically from what is
stored (earliest `when`, ties by digest), so every process and every later reader agrees. The winner makes
sure the tag names its digest (a loser's PUT may have landed last); a loser re-points the tag at the
winner's digest and raises PromotionError; its event stays listed as superseded, or is not listed at all
when distribution's referrers fallback index (a read-modify-write tag) dropped it: an event not visible at
the settle read never takes effect later, for its own writer has already reported the loss.
Residual risk, stated: a writer stalled for longer than the others' settle time between reading the head
and making its event visible can still win by the rule after another writer reported success; the
history stays one chain and the tag follows the event in effect.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, TypeVar

from modelpack.environment import actor
from modelpack.environment.history import (
    Event,
    History,
    ensure_anchor,
    format_when,
    load_history,
    short,
    write_event,
)
from modelpack.environment.place import Place
from modelpack.errors import AuthError, ModelpackError, NotFoundError, PromotionError, RegistryError
from modelpack.oci.target import RawManifest, Target
from modelpack.trust.check import Check
from modelpack.trust.keys import PrivateKey, PublicKey

T = TypeVar("T")
RETRIES = 4


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Runtime:
    """The side effects of a move, injected: clocks, sleeping, the environment `who` is read from."""

    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    actor: str | None = None  # overrides the identity read from `environ`
    settle_factor: float = 1.5  # settle time = factor x this run's own tag PUT and event write
    after_read: Callable[[], None] = _nothing  # a seam for tests: runs after the state is read
    key: PrivateKey | None = None  # the promoter's key: the event is signed with it
    promoters: tuple[PublicKey, ...] = ()  # keys the policy names: only events they signed are in effect

    def who(self) -> str:
        return self.actor or actor.who(self.environ)


@dataclass(frozen=True)
class MoveResult:
    env: str
    reference: str  # the environment tag as the user names it
    event: Event  # digest None on a dry run or when nothing changed
    changed: bool
    dry_run: bool
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            **event_json(self.event),
            "changed": self.changed,
            "dryRun": self.dry_run,
            "notes": list(self.notes),
        }


def event_json(e: Event) -> dict[str, Any]:
    """An event as `--json` shows it (camelCase; the stored payload keeps its own field names)."""
    return {
        "env": e.env,
        "action": e.action,
        "version": e.version,
        "fromDigest": e.from_digest,
        "toDigest": e.to_digest,
        "who": e.who,
        "when": e.when,
        "reason": e.reason,
        "forced": e.forced,
        "previousEvent": e.previous_event,
        "eventDigest": e.digest,
        "evidence": [c.to_json() for c in e.evidence],
        "weight": e.weight,
    }


@dataclass(frozen=True)
class State:
    current: RawManifest | None  # what the environment tag names now
    history: History


def move(
    place: Place,
    env: str,
    release: RawManifest,
    version: str,
    action: str,
    reason: str,
    forced: bool,
    dry_run: bool,
    rt: Runtime,
    notes: list[str],
    state: State | None = None,
    evidence: tuple[Check, ...] = (),
    weight: int | None = None,
) -> MoveResult:
    """Point `env` at `release` and record `action`; `state` is what the caller already read, if any.
    A canary (`weight`) or an abort records the event alone: the tag keeps naming the stable release."""
    target = place.target
    state = state or read_state(place, env, rt)
    rt.after_read()
    head = state.history.head
    before = state.current.digest if state.current is not None else None
    if head is not None and before is not None and head.names != before:
        notes.append(f"note: {env} was moved outside modelpack since its last recorded event")
    event = Event(
        env=env,
        action=action,
        version=version,
        from_digest=before,
        to_digest=release.digest,
        who=rt.who(),
        when=format_when(rt.clock()),
        reason=reason,
        forced=forced,
        previous_event=head.digest if head is not None else None,
        evidence=evidence,
        weight=weight,
    )
    result = MoveResult(env, place.ref_text(env), event, changed=False, dry_run=dry_run, notes=tuple(notes))
    if before == release.digest and event.moves_tag and not _ends_canary(state.history):
        return replace(result, notes=(*notes, f"{env} already names {version}: nothing to do"))
    if dry_run:
        return result
    started = rt.monotonic()
    try:
        if event.moves_tag and before != release.digest:
            target.put_manifest(env, RawManifest(release.raw, release.media_type, release.digest))
    except ModelpackError as e:
        raise PromotionError(
            f"{action} of {env} failed: {target.describe()} refused the tag PUT ({e.message}); "
            f"{env} is unchanged{at(before)} and no event was recorded"
        ) from None
    try:
        if head is None:
            ensure_anchor(target, env, place.name)
        # never dated before the event it follows (history refuses that), whatever this machine's clock says
        now_when = format_when(rt.clock())
        timed = replace(event, when=max(now_when, head.when) if head is not None else now_when)
        stored = again(rt, lambda: write_event(target, timed, place.name, rt.key))  # idempotent: same bytes
    except ModelpackError as e:
        _restore(place, env, state.current, e)
    visible = rt.monotonic()
    # A competitor that read the same head did so before our event was visible; moving at up to
    # settle_factor times our speed, its event is visible by this deadline (see the module docstring).
    rt.sleep(max(0.0, visible + rt.settle_factor * (visible - started) - rt.monotonic()))
    return _settle(place, env, stored, replace(result, event=stored, changed=True), rt)


def _ends_canary(history: History) -> bool:
    """Whether a canary is in effect: a promote of what the tag already names then still records that
    the canary ended (the stable release takes every request again)."""
    return history.head is not None and history.head.action == "canary"


def _settle(place: Place, env: str, mine: Event, result: MoveResult, rt: Runtime) -> MoveResult:
    """Re-read the history after the settle time and make the tag agree with the event in effect."""
    with ThreadPoolExecutor(1) as pool:
        tagged = pool.submit(again, rt, lambda: digest_of(place.target, env))
        history = again(rt, lambda: load_history(place.target, env, place.name, rt.promoters))
        now = tagged.result()
    head = history.head
    if history.is_in_effect(mine.digest):
        if head is not None and head.digest == mine.digest and mine.names is not None:
            _point(place, env, mine.names, now, rt)
        return result
    won = next((e for e in history.chain if e.previous_event == mine.previous_event), head)
    final = head.names if head is not None else None
    if final is not None:
        _point(place, env, final, now, rt)
    who = f"{won.version} promoted by {won.who} at {won.when}" if won else "another run"
    raise PromotionError(
        f"lost the race to {who}; {env} is at {short(final)}; nothing of this run is in effect",
        hint=f"see `modelpack history {place.display} {env}`",
    )


def _point(place: Place, env: str, digest: str, now: str | None, rt: Runtime) -> None:
    """Make the tag name `digest` (re-PUT when a racing run's PUT landed last), then read it back.
    `now` is what the tag was just read as: when it agrees, that read was the verification."""
    if now == digest:
        return
    raw = again(rt, lambda: place.target.get_manifest(digest))
    place.target.put_manifest(env, raw)
    found = again(rt, lambda: digest_of(place.target, env))
    if found != digest:
        raise PromotionError(
            f"{place.ref_text(env)} reads back as {short(found)} after being set to {short(digest)}; "
            "another run is moving it",
            hint=f"see `modelpack history {place.display} {env}`",
        )


def _restore(place: Place, env: str, previous: RawManifest | None, cause: ModelpackError) -> NoReturn:
    try:
        if previous is not None:
            place.target.put_manifest(env, previous)
        else:
            place.target.delete_tag(env)
    except ModelpackError as e:
        raise PromotionError(
            f"could not record the event ({cause.message}) and could not put {env} back "
            f"({e.message}): {env} now names a release with no recorded event",
            hint=f"check it with `modelpack history {place.display} {env}`",
        ) from None
    back = at(previous.digest if previous is not None else None)
    raise PromotionError(
        f"could not record the event ({cause.message}); {env} was put back{back}, nothing is in effect"
    ) from None


def read_state(place: Place, env: str, rt: Runtime) -> State:
    def tagged() -> RawManifest | None:
        try:
            return place.target.get_manifest(env)
        except NotFoundError:
            return None

    with ThreadPoolExecutor(1) as pool:  # two independent reads: one round trip of latency, not two
        current = pool.submit(again, rt, tagged)
        history = again(rt, lambda: load_history(place.target, env, place.name, rt.promoters))
        return State(current.result(), history)


def at(digest: str | None) -> str:
    return f" at {short(digest)}" if digest else " (absent)"


def again(rt: Runtime, step: Callable[[], T]) -> T:
    """Run an idempotent step again when the registry fails it: distribution 2.8 answers 500 to a read
    of a tag (or the referrers fallback tag) that a racing run is writing at that instant."""
    for attempt in range(1, RETRIES + 1):
        try:
            return step()
        except (NotFoundError, AuthError):
            raise
        except RegistryError:
            if attempt == RETRIES:
                raise
            rt.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def digest_of(target: Target, tag: str) -> str | None:
    try:
        return target.get_manifest(tag).digest
    except NotFoundError:
        return None
