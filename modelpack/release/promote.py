"""promote and rollback: which release an environment should name, and the checks before it moves.

promote refuses a release with no passing test report attached to exactly its index digest
(`evidence.passing_report`), unless forced with a reason, which is recorded. rollback is the incident tool:
it checks no report and says so; without a version it goes to what the environment named before its last
recorded move. The move itself (retag, event, race settlement) is `move.move`, shared by both.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from modelpack.errors import ModelpackError, NotFoundError, PromotionError, UsageError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import parse
from modelpack.oci.target import RawManifest
from modelpack.release.evidence import passing_report
from modelpack.release.history import MAX_REASON, short
from modelpack.release.move import MoveResult, Runtime, State, digest_of, move, read_state
from modelpack.release.place import Place, check_env

__all__ = ["MoveResult", "Runtime", "promote", "rollback", "verify"]


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
        state = pool.submit(read_state, place, env, rt)
        try:
            release = place.target.get_manifest(ref if by_digest else place.tag(ref))
        except NotFoundError:
            raise NotFoundError(
                f"cannot promote {place.ref_text(ref)}: it does not exist",
                hint="check the version with `modelpack ls`",
            ) from None
        report = passing_report(place.target, release.digest)
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
    return move(place, env, release, version, "promote", reason, force, dry_run, rt, notes, current)


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
        state = read_state(place, env, rt)
        release, label = _previous(place, env, state)
    else:
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(read_state, place, env, rt)
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
    return move(place, env, release, label, "rollback", reason, False, dry_run, rt, notes, state)


def _previous(place: Place, env: str, state: State) -> tuple[RawManifest, str]:
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


def _version_of(release: RawManifest, fallback: str | None) -> str:
    try:
        version = parse(release.raw, release.media_type).annotations.get(mt.ANN_VERSION)
    except ModelpackError:
        version = None
    return version or fallback or short(release.digest)


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON:
        raise UsageError(f"--reason is {len(reason)} characters long; keep it under {MAX_REASON}")


def verify(place: Place, env: str) -> str | None:
    """What the environment tag names now (its digest), read from the target."""
    return digest_of(place.target, place.tag(env))
