"""What an environment names now, as every target runs it: the stable release and, during a canary, the
canary release with its share of requests. Derived from the environment's events alone (pure), so the
Docker deployer, the Kubernetes manifests and the portal agree on it.

The rule. The events in effect are replayed oldest first: a promote or a rollback makes its release the
stable one and ends any canary; a canary event sets the canary (release and weight) beside the stable it
names (`from_digest`); an abort ends the canary. When the tag names something no event put there (moved
outside modelpack), the tag wins as the stable release and a canary recorded against another stable is
dropped: traffic never goes to a release the environment does not name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpack.environment.history import Event, History


@dataclass(frozen=True)
class Canary:
    digest: str
    version: str
    weight: int  # 1-99: percent of requests
    event: str | None  # the canary event's digest


@dataclass(frozen=True)
class EnvState:
    env: str
    stable: str | None  # digest; None: the environment names nothing yet
    stable_version: str
    canary: Canary | None
    head: str | None  # digest of the newest event in effect this was derived from
    moved_outside: bool = False  # the tag names a release no recorded event put there

    def weights(self) -> dict[str, int]:
        """digest -> percent of requests; sums to 100 when anything runs."""
        if self.stable is None:
            return {}
        if self.canary is None:
            return {self.stable: 100}
        return {self.stable: 100 - self.canary.weight, self.canary.digest: self.canary.weight}

    def digests(self) -> tuple[str, ...]:
        return tuple(self.weights())

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "stable": self.stable,
            "stableVersion": self.stable_version,
            "canary": None
            if self.canary is None
            else {
                "digest": self.canary.digest,
                "version": self.canary.version,
                "weight": self.canary.weight,
                "event": self.canary.event,
            },
            "headEvent": self.head,
            "movedOutside": self.moved_outside,
        }


def state_of(env: str, history: History, tagged: str | None) -> EnvState:
    """The state `history` (events in effect) and the tag's digest (`tagged`, None when absent) give."""
    stable: str | None = None
    version = ""
    canary: Canary | None = None
    for e in history.chain:
        stable, version, canary = _apply(e, stable, version, canary)
    head = history.head.digest if history.head is not None else None
    if tagged is not None and tagged != stable:
        outside = stable is not None or bool(history.chain)
        return EnvState(env, tagged, _version_for(history, tagged), None, head, outside)
    if tagged is None and stable is not None:
        # the tag was deleted outside modelpack: nothing is named, so nothing runs
        return EnvState(env, None, "", None, head, True)
    return EnvState(env, stable, version, canary, head)


def _apply(
    e: Event, stable: str | None, version: str, canary: Canary | None
) -> tuple[str | None, str, Canary | None]:
    if e.moves_tag:
        return e.to_digest, e.version, None
    if e.action == "canary" and e.weight is not None and e.from_digest == stable:
        return stable, version, Canary(e.to_digest, e.version, e.weight, e.digest)
    if e.action == "abort":
        return stable, version, None
    return stable, version, canary


def _version_for(history: History, digest: str) -> str:
    moved = history.last_move_to(digest)
    return moved.version if moved is not None else ""
