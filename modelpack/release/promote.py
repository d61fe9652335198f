"""Promote and roll back: point an environment tag at a release's index, and record that in the registry.

A move is a retag: the index's exact bytes are PUT under the environment tag (one manifest PUT, no blob
moves, the digest the target reports is compared), so image and bundle move together atomically and the
time does not depend on the model's size. It works the same on a registry, an `oci:` layout and the local
store because it only uses the Target protocol.

Order of writes, and why it differs from "event first": the tag is PUT *before* the event is written. A
refused tag PUT then leaves nothing behind at all (no event claims a move that never happened, and the
Target protocol has no way to withdraw a referrer); if writing the event fails after the tag moved, the
tag is put back to the bytes it named before and the error says so.

Races. Registries have no compare-and-swap. Each writer reads the head event and the tag, PUTs the tag,
writes its event naming the head it read, then waits a settle time (twice its own event write, so a
competitor that read the same head has made its event visible) and re-reads the history. `history.resolve`
picks one event among those following the same head, deterministically from what is stored (earliest
`when`, ties by digest), so every process and every later reader agrees. The winner makes sure the tag
names its digest (a loser's PUT may have landed last); a loser re-points the tag at the winner's digest and
raises PromotionError; its event stays listed as superseded. Residual risk, stated: a writer stalled for
longer than the others' settle time between reading the head and making its event visible can still win
by the rule after another writer reported success; the history stays one chain and the tag follows it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from modelpack.errors import ModelpackError, NotFoundError, PromotionError, UsageError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.release import actor
from modelpack.release.history import (
    MAX_REASON,
    Event,
    History,
    ensure_anchor,
    format_when,
    load_history,
    short,
    write_event,
)
from modelpack.release.place import Place, check_env


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
            **self.event.to_json(),
            "event_digest": self.event.digest,
            "changed": self.changed,
            "dry_run": self.dry_run,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _State:
    current: RawManifest | None  # what the environment tag names now
    history: History


def promote(
    place: Place,
    ref: str,
    env: str,
    *,
    force: bool = False,
    reason: str = "",
    dry_run: bool = False,
    runtime: Runtime | None = None,
) -> MoveResult:
    """Point `env` at the release `ref` (tag or digest) of `place`; refuses one with no passing test report
    attached to exactly its digest, unless `force` (which needs a `reason` and is recorded)."""
    rt = runtime or Runtime()
    check_env(env)
    _check_reason(reason)
    if force and not reason.strip():
        raise UsageError("--force needs --reason TEXT: a forced promotion is recorded with its reason")
    by_digest = ref.startswith("sha256:")
    # The environment's state does not depend on the release: read both at once (latency, not bytes).
    with ThreadPoolExecutor(1) as pool:
        state = pool.submit(_read_state, place, env)
        try:
            release = place.target.get_manifest(ref if by_digest else place.tag(ref))
        except NotFoundError:
            raise NotFoundError(
                f"cannot promote {place.ref_text(ref)}: it does not exist",
                hint="check the version with `modelpack ls`",
            ) from None
        report = _passing_report(place.target, release.digest)
        notes: list[str] = []
        if report is None and not force:
            raise PromotionError(
                f"refusing to promote {place.ref_text(ref)}: no passing test report is attached to "
                f"{release.digest}",
                hint="run `modelpack test` on it first, or pass --force --reason TEXT",
            )
        if report is None:
            notes.append(f"no passing test report for {short(release.digest)}: forced, recorded as forced")
        else:
            notes.append(f"passing test report {short(report.digest)} found for {short(release.digest)}")
        version = _version_of(release, None if by_digest else ref)
        current = state.result()
    return _move(place, env, release, version, "promote", reason, force, dry_run, rt, notes, current)


def rollback(
    place: Place,
    env: str,
    version: str | None = None,
    *,
    reason: str = "",
    dry_run: bool = False,
    runtime: Runtime | None = None,
) -> MoveResult:
    """Point `env` back at `version`, or without one at what it named before its last recorded move."""
    rt = runtime or Runtime()
    check_env(env)
    _check_reason(reason)
    notes = ["rollback checks no test report: it is the incident tool"]
    if version is None:
        state = _read_state(place, env)
        release, label = _previous(place, env, state)
    else:
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(_read_state, place, env)
            try:
                release = place.target.get_manifest(place.tag(version))
            except NotFoundError:
                raise PromotionError(
                    f"cannot roll {env} back to {version}: {place.ref_text(version)} no longer exists; "
                    "nothing was changed",
                    hint=f"see `modelpack history {place.display} {env}` for what it pointed at",
                ) from None
            state = reading.result()
        if not state.history.ever_moved_to(release.digest):
            notes.append(f"warning: {version} was never promoted to {env} before")
        label = _version_of(release, version)
    return _move(place, env, release, label, "rollback", reason, False, dry_run, rt, notes, state)


def _previous(place: Place, env: str, state: _State) -> tuple[RawManifest, str]:
    if state.current is None:
        raise PromotionError(f"{place.ref_text(env)} does not exist: nothing to roll back")
    last = state.history.last_move_to(state.current.digest)
    if last is None:
        raise PromotionError(
            f"no recorded event moved {env} to its current {short(state.current.digest)}: "
            "cannot tell what came before; nothing was changed",
            hint=f"name the version: modelpack rollback {place.display} {env} VERSION",
        )
    if last.from_digest is None:
        raise PromotionError(
            f"{env} named nothing before {last.version} (promoted {last.when}): nothing to roll back to",
            hint=f"name a version: modelpack rollback {place.display} {env} VERSION",
        )
    try:
        release = place.target.get_manifest(last.from_digest)
    except NotFoundError:
        raise PromotionError(
            f"the release {env} named before ({short(last.from_digest)}) is gone from {place.display}; "
            "nothing was changed",
            hint=f"name a version that exists: modelpack rollback {place.display} {env} VERSION",
        ) from None
    earlier = state.history.last_move_to(last.from_digest)
    return release, _version_of(release, earlier.version if earlier else None)


def _move(
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
    state: _State | None = None,
) -> MoveResult:
    target, tag = place.target, place.tag(env)
    state = state or _read_state(place, env)
    rt.after_read()
    head = state.history.head
    before = state.current.digest if state.current is not None else None
    if head is not None and before is not None and head.to_digest != before:
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
    )
    result = MoveResult(env, place.ref_text(env), event, changed=False, dry_run=dry_run, notes=tuple(notes))
    if before == release.digest:
        return replace(result, notes=(*notes, f"{env} already names {version}: nothing to do"))
    if dry_run:
        return result
    started = rt.monotonic()
    try:
        target.put_manifest(tag, RawManifest(release.raw, release.media_type, release.digest))
    except ModelpackError as e:
        raise PromotionError(
            f"{action} of {env} failed: {target.describe()} refused the tag PUT ({e.message}); "
            f"{env} is unchanged{_at(before)} and no event was recorded"
        ) from None
    try:
        if head is None:
            ensure_anchor(target, env, place.name)
        stored = write_event(target, replace(event, when=format_when(rt.clock())), place.name)
    except ModelpackError as e:
        _restore(place, env, state.current, e)
    visible = rt.monotonic()
    # A competitor that read the same head did so before our event was visible; moving at up to
    # settle_factor times our speed, its event is visible by this deadline (see the module docstring).
    rt.sleep(max(0.0, visible + rt.settle_factor * (visible - started) - rt.monotonic()))
    return _settle(place, env, stored, replace(result, event=stored, changed=True))


def _settle(place: Place, env: str, mine: Event, result: MoveResult) -> MoveResult:
    """Re-read the history after the settle time and make the tag agree with the event in effect."""
    with ThreadPoolExecutor(1) as pool:
        tagged = pool.submit(_digest_of, place.target, place.tag(env))
        history = load_history(place.target, env, place.name)
        now = tagged.result()
    head = history.head
    if history.is_in_effect(mine.digest):
        if head is not None and head.digest == mine.digest:
            _point(place, env, mine.to_digest, now)
        return result
    won = next((e for e in history.chain if e.previous_event == mine.previous_event), head)
    final = head.to_digest if head is not None else None
    if final is not None:
        _point(place, env, final, now)
    who = f"{won.version} promoted by {won.who} at {won.when}" if won else "another run"
    raise PromotionError(
        f"lost the race to {who}; {env} is at {short(final)}; nothing of this run is in effect",
        hint=f"see `modelpack history {place.display} {env}`",
    )


def _point(place: Place, env: str, digest: str, now: str | None) -> None:
    """Make the tag name `digest` (re-PUT when a racing run's PUT landed last), then read it back.
    `now` is what the tag was just read as: when it agrees, that read was the verification."""
    if now == digest:
        return
    tag = place.tag(env)
    raw = place.target.get_manifest(digest)
    place.target.put_manifest(tag, raw)
    found = _digest_of(place.target, tag)
    if found != digest:
        raise PromotionError(
            f"{place.ref_text(env)} reads back as {short(found)} after being set to {short(digest)}; "
            "another run is moving it",
            hint=f"see `modelpack history {place.display} {env}`",
        )


def _restore(place: Place, env: str, previous: RawManifest | None, cause: ModelpackError) -> NoReturn:
    tag = place.tag(env)
    try:
        if previous is not None:
            place.target.put_manifest(tag, previous)
        else:
            place.target.delete_tag(tag)
    except ModelpackError as e:
        raise PromotionError(
            f"could not record the event ({cause.message}) and could not put {env} back "
            f"({e.message}): {env} now names a release with no recorded event",
            hint=f"check it with `modelpack history {place.display} {env}`",
        ) from None
    back = _at(previous.digest if previous is not None else None)
    raise PromotionError(
        f"could not record the event ({cause.message}); {env} was put back{back}, nothing is in effect"
    ) from None


def _read_state(place: Place, env: str) -> _State:
    try:
        current: RawManifest | None = place.target.get_manifest(place.tag(env))
    except NotFoundError:
        current = None
    return _State(current, load_history(place.target, env, place.name))


def _digest_of(target: Target, tag: str) -> str | None:
    try:
        return target.get_manifest(tag).digest
    except NotFoundError:
        return None


def _version_of(release: RawManifest, fallback: str | None) -> str:
    try:
        version = parse(release.raw, release.media_type).annotations.get(mt.ANN_VERSION)
    except ModelpackError:
        version = None
    return version or fallback or short(release.digest)


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON:
        raise UsageError(f"--reason is {len(reason)} characters long; keep it under {MAX_REASON}")


def _at(digest: str | None) -> str:
    return f" at {short(digest)}" if digest else " (absent)"


def _passing_report(target: Target, digest: str) -> Descriptor | None:
    """The runner's check when it is installed; the same rule read directly otherwise."""
    try:
        from modelpack.runner.report import passing_report
    except ImportError:
        found = [
            d
            for d in target.referrers(digest, mt.TEST_REPORT_ARTIFACT)
            if (d.annotations or {}).get("dev.modelpack.test.passed") == "true"
        ]
        return found[0] if found else None
    return passing_report(target, digest)


def verify(place: Place, env: str) -> str | None:
    """What the environment tag names now (its digest), read from the target."""
    return _digest_of(place.target, place.tag(env))
