"""Promotion history kept in the registry itself: events attached as referrers of a per-environment anchor.

Where events live. Every promote or rollback writes one small artifact (`attach`) whose payload JSON is the
event and whose annotations carry the same fields, so reading the history is one referrers listing and no
blob. Its `subject` is the environment's *anchor*: an empty artifact manifest whose only content is the
annotation `dev.modelpack.env=ENV` (plus the release name in the local store, where one layout holds many
names). The anchor's bytes are canonical, so its digest is the same every time and anyone can compute it
without reading anything; it is pushed by digest (no tag) on the first promotion. Attaching events to the
release indexes instead would scatter an environment's history over every version ever promoted.

One chain. Each event names the event it follows (`previous_event`: the head its writer read). Registries
offer no compare-and-swap, so two writers racing can both follow the same head; `resolve` then picks one
deterministically from what is stored, the same answer for every reader: the earliest `when`, ties by
digest. The others (and anything that followed them) are *superseded*: listed, marked, never counted as
where the environment has been (rollback ignores them). Keeping them listed is deliberate: an event is an
immutable record that someone tried to move the environment, and hiding it would lose that trail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelpack.errors import ContentError, InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.target import RawManifest, Target
from modelpack.release.evidence import EMPTY_CONFIG, attach, read_payload

EVENT_TYPE = mt.PROMOTION_EVENT_ARTIFACT
ANCHOR_TYPE = "application/vnd.modelpack.env-anchor.v1"
EVENT_MEDIA_TYPE = "application/json"
ANN_ENV = "dev.modelpack.env"
ANN_NAME = "dev.modelpack.name"
_PREFIX = "dev.modelpack.event."
ACTIONS = ("promote", "rollback")
MAX_REASON = 1000


def format_when(seconds: float) -> str:
    """RFC 3339 UTC with microseconds: one fixed format, so the strings sort as the times do."""
    whole = int(seconds)
    micros = round((seconds - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def short(digest: str | None) -> str:
    return digest.split(":", 1)[-1][:12] if digest else "-"


@dataclass(frozen=True)
class Event:
    env: str
    action: str  # promote | rollback
    version: str
    from_digest: str | None  # what the environment tag named before (None: it did not exist)
    to_digest: str
    who: str
    when: str  # format_when
    reason: str = ""
    forced: bool = False
    previous_event: str | None = None  # digest of the event this one follows
    digest: str | None = field(default=None, compare=False)  # of the stored event manifest

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "action": self.action,
            "version": self.version,
            "from_digest": self.from_digest,
            "to_digest": self.to_digest,
            "who": self.who,
            "when": self.when,
            "reason": self.reason,
            "forced": self.forced,
            "previous_event": self.previous_event,
        }

    def payload(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    def annotations(self) -> dict[str, str]:
        out = {
            ANN_ENV: self.env,
            mt.ANN_CREATED: self.when,
            mt.ANN_VERSION: self.version,
            **{_PREFIX + k: _text(v) for k, v in self.to_json().items() if k not in ("env", "version")},
        }
        return {k: v for k, v in out.items() if v != ""}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], digest: str | None = None) -> Event:
        try:
            action = str(obj["action"])
            if action not in ACTIONS:
                raise InputError(f"promotion event {digest}: unknown action {action!r}")
            return cls(
                env=str(obj["env"]),
                action=action,
                version=str(obj.get("version") or ""),
                from_digest=obj.get("from_digest") or None,
                to_digest=str(obj["to_digest"]),
                who=str(obj.get("who") or ""),
                when=str(obj["when"]),
                reason=str(obj.get("reason") or ""),
                forced=obj.get("forced") in (True, "true"),
                previous_event=obj.get("previous_event") or None,
                digest=digest,
            )
        except (KeyError, TypeError):
            raise InputError(f"promotion event {digest} is missing fields") from None

    @classmethod
    def from_annotations(cls, ann: Mapping[str, str], digest: str) -> Event | None:
        """The event as the referrers listing describes it, or None when its annotations are incomplete."""
        fields = {k[len(_PREFIX) :]: v for k, v in ann.items() if k.startswith(_PREFIX)}
        if ANN_ENV not in ann or not {"action", "to_digest", "when"} <= fields.keys():
            return None
        return cls.from_json({**fields, "env": ann[ANN_ENV], "version": ann.get(mt.ANN_VERSION)}, digest)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def anchor(env: str, name: str | None = None) -> Manifest:
    """The environment's anchor: the same bytes, so the same digest, every time."""
    annotations = {ANN_ENV: env, **({ANN_NAME: name} if name else {})}
    return Manifest(config=EMPTY_CONFIG, layers=(), artifact_type=ANCHOR_TYPE, annotations=annotations)


def ensure_anchor(target: Target, env: str, name: str | None = None) -> Descriptor:
    doc = anchor(env, name)
    target.write_blob(EMPTY_CONFIG, [mt.EMPTY_JSON])
    raw = doc.to_bytes()
    target.put_manifest(doc.digest, RawManifest(raw, doc.media_type, doc.digest))
    return doc.descriptor()


def write_event(target: Target, event: Event, name: str | None = None) -> Event:
    """Store `event` as a referrer of its environment's anchor; returns it with its digest."""
    subject = anchor(event.env, name).descriptor()
    desc = attach(target, subject, EVENT_TYPE, event.payload(), EVENT_MEDIA_TYPE, event.annotations())
    return replace(event, digest=desc.digest)


def read_events(target: Target, env: str, name: str | None = None) -> list[Event]:
    """Every event of `env`, from one referrers listing (a payload is read only for a foreign writer's
    event that lacks our annotations)."""
    out: list[Event] = []
    for desc in target.referrers(anchor(env, name).digest, EVENT_TYPE):
        event = Event.from_annotations(desc.annotations or {}, desc.digest)
        if event is None:
            try:
                event = Event.from_json(json.loads(read_payload(target, desc)), desc.digest)
            except (ValueError, InputError, ContentError):
                continue  # not ours to interpret; history lists what it can read
        if event.env == env:
            out.append(event)
    return out


@dataclass(frozen=True)
class History:
    """Events in effect (`chain`, oldest first) and those that lost a race (`superseded`)."""

    env: str
    chain: tuple[Event, ...]
    superseded: tuple[Event, ...]

    @property
    def head(self) -> Event | None:
        return self.chain[-1] if self.chain else None

    def is_in_effect(self, event_digest: str | None) -> bool:
        return any(e.digest == event_digest for e in self.chain)

    def newest_first(self) -> list[tuple[Event, bool]]:
        """(event, in effect) newest first: by `when`, the chain's own order breaking ties."""
        rank = {e.digest: i for i, e in enumerate(self.chain)}
        both = [(e, True) for e in self.chain] + [(e, False) for e in self.superseded]
        return sorted(
            both, key=lambda p: (p[0].when, rank.get(p[0].digest, -1), p[0].digest or ""), reverse=True
        )

    def last_move_to(self, digest: str) -> Event | None:
        """The newest event in effect that moved the environment to `digest`."""
        return next((e for e in reversed(self.chain) if e.to_digest == digest), None)

    def ever_moved_to(self, digest: str) -> bool:
        return any(e.to_digest == digest for e in self.chain)


def winner(siblings: list[Event]) -> Event:
    """Among events following the same head, the one in effect: earliest `when`, ties by digest."""
    return min(siblings, key=lambda e: (e.when, e.digest or ""))


def resolve(env: str, events: list[Event]) -> History:
    known = {e.digest for e in events}
    children: dict[str | None, list[Event]] = {}
    for e in events:
        # An event following one we cannot see (dropped from a referrers index) competes as a root.
        parent = e.previous_event if e.previous_event in known else None
        children.setdefault(parent, []).append(e)
    chain: list[Event] = []
    level = children.get(None, [])
    while level:
        chosen = winner(level)
        chain.append(chosen)
        level = children.get(chosen.digest, [])
    in_chain = {e.digest for e in chain}
    superseded = tuple(e for e in events if e.digest not in in_chain)
    return History(env, tuple(chain), superseded)


def load_history(target: Target, env: str, name: str | None = None) -> History:
    return resolve(env, read_events(target, env, name))


def has_history(target: Target, env: str, name: str | None = None) -> bool:
    """Whether any promotion event was ever recorded for `env` (one referrers listing)."""
    return bool(target.referrers(anchor(env, name).digest, EVENT_TYPE))
