"""Promotion history kept in the registry itself: events attached as referrers of a per-environment anchor.

Where events live. Every promote or rollback writes one small artifact (`attach`) whose payload JSON is the
event and whose annotations carry the same fields (for other tools' listings). Its `subject` is the
environment's *anchor*: an empty artifact manifest whose only content is the annotation
`dev.modelpack.env=ENV` (plus the release name in the local store, where one layout holds many names).
The anchor's bytes are canonical, so its digest is the same every time and anyone can compute it without
reading anything; it is pushed by digest (no tag) on the first promotion. Attaching events to the release
indexes instead would scatter an environment's history over every version ever promoted.

One chain. Each event names the event it follows (`previous_event`: the head its writer read). Registries
offer no compare-and-swap, so two writers racing can both follow the same head; `resolve` then picks one
deterministically from what is stored, the same answer for every reader: the earliest `when`, ties by
digest. The others (and anything that followed them) are *superseded*: listed, marked, never counted as
where the environment has been (rollback ignores them). Keeping them listed is deliberate: an event is an
immutable record that someone tried to move the environment, and hiding it would lose that trail.

Signed events. `promote --key` / `rollback --key` write the event as a DSSE envelope signed by the
promoter's key. When the environment's policy names promoter keys (`promoter:KEY.pub`), only events one of
them verifies can be in effect (`load_history(keys=...)`); the rest are `unverified`: listed, never
counted, so an event pushed by hand changes no rollback. Without keys, the rules above are all there is:
an event dated before the one it follows is never followed, but a forged root dated earliest still wins
its own race (retention keeps what such events name, so it cannot get real releases deleted).

What is trusted. On a registry without the referrers API the listing is a tag (`sha256-<hex>`) that anyone
with push rights rewrites at will: its annotations (`who`, `to_digest`) are whatever the last writer put
there. So the listing only says which digests to read; each event is its own manifest (checked against
its digest, its subject the anchor) and payload (checked against the manifest), read a few at a time.
Whatever links the events claim, the chain walk visits each digest once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from modelpack.errors import ContentError, InputError, NotFoundError
from modelpack.evidence.evidence import EMPTY_CONFIG, attach
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.trust.check import Check
from modelpack.trust.dsse import open_envelope, seal
from modelpack.trust.keys import PrivateKey, PublicKey

EVENT_TYPE = mt.PROMOTION_EVENT_ARTIFACT
ANCHOR_TYPE = mt.ENV_ANCHOR
EVENT_MEDIA_TYPE = "application/json"
ANN_ENV = "dev.modelpack.env"
ANN_NAME = "dev.modelpack.name"
_PREFIX = "dev.modelpack.event."
ACTIONS = ("promote", "rollback", "canary", "abort")
# Actions that move the environment tag. A canary sends a share of requests (`weight`) to `to_digest`
# while the tag keeps naming the stable release (`from_digest`); an abort ends a canary, the tag unmoved.
MOVES = ("promote", "rollback")
MAX_REASON = 1000
MAX_EVENT_BYTES = 64 * 1024  # an event payload is a few hundred bytes; a bigger one is not ours
MAX_EVIDENCE = 64  # checks recorded per event: a policy has at most 32 requirements
MAX_EVENTS = 100_000  # beyond any real history (one promotion a minute for two months)


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
    evidence: tuple[Check, ...] = ()  # what promote or rollback checked (the policy's requirements)
    weight: int | None = None  # canary only: the percent of requests sent to `to_digest`
    signer: str | None = field(default=None, compare=False)  # keyid of a trusted key that verified it

    @property
    def names(self) -> str | None:
        """What the environment tag names after this event (a canary leaves it on the stable release)."""
        return self.from_digest if self.action == "canary" else self.to_digest

    @property
    def moves_tag(self) -> bool:
        return self.action in MOVES

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
            # only when something was checked, so events written before policies keep their bytes
            **({"evidence": [c.to_json() for c in self.evidence]} if self.evidence else {}),
            **({"weight": self.weight} if self.weight is not None else {}),
        }

    def payload(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    def annotations(self) -> dict[str, str]:
        out = {
            ANN_ENV: self.env,
            mt.ANN_CREATED: self.when,
            mt.ANN_VERSION: self.version,
            **{
                _PREFIX + k: _text(v)
                for k, v in self.to_json().items()
                if k not in ("env", "version", "evidence")  # evidence is in the payload alone
            },
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
                from_digest=_digest_field(obj, "from_digest", digest),
                to_digest=str(_digest_field(obj, "to_digest", digest, required=True)),
                who=str(obj.get("who") or ""),
                when=str(obj["when"]),
                reason=str(obj.get("reason") or ""),
                forced=obj.get("forced") in (True, "true"),
                previous_event=_digest_field(obj, "previous_event", digest),
                digest=digest,
                evidence=_evidence(obj.get("evidence"), digest),
                weight=_weight(obj.get("weight"), action, digest),
            )
        except (KeyError, TypeError, AttributeError):
            raise InputError(f"promotion event {digest} is missing fields") from None

    @classmethod
    def from_annotations(cls, ann: Mapping[str, str], digest: str) -> Event | None:
        """The event as the referrers listing describes it, or None when its annotations are incomplete."""
        fields = {k[len(_PREFIX) :]: v for k, v in ann.items() if k.startswith(_PREFIX)}
        if ANN_ENV not in ann or not {"action", "to_digest", "when"} <= fields.keys():
            return None
        return cls.from_json({**fields, "env": ann[ANN_ENV], "version": ann.get(mt.ANN_VERSION)}, digest)


def _digest_field(obj: Mapping[str, Any], key: str, event: str | None, required: bool = False) -> str | None:
    """A digest an event names: rollback re-tags it, so anything else is refused, not passed on."""
    value = obj[key] if required else obj.get(key)
    if not value and not required:
        return None
    if not isinstance(value, str) or not digests.is_digest(value):
        raise InputError(f"promotion event {event}: {key} {value!r} is not a digest")
    return value


def _weight(value: object, action: str, event: str | None) -> int | None:
    if action != "canary":
        return None
    try:
        weight = int(str(value))
    except ValueError:
        raise InputError(f"promotion event {event}: canary weight {value!r} is not a number") from None
    if not 1 <= weight <= 99:
        raise InputError(f"promotion event {event}: canary weight {weight} is outside 1-99")
    return weight


def _evidence(value: object, event: str | None) -> tuple[Check, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_EVIDENCE:
        raise InputError(f"promotion event {event}: evidence is not a list of at most {MAX_EVIDENCE} checks")
    return tuple(
        Check(
            kind=str(c["kind"]),
            ok=c["ok"] is True,
            detail=str(c.get("detail") or ""),
            signer=str(c["signer"]) if c.get("signer") else None,
            evidence=str(c["evidence"]) if c.get("evidence") else None,
        )
        for c in value
    )


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


def write_event(
    target: Target, event: Event, name: str | None = None, key: PrivateKey | None = None
) -> Event:
    """Store `event` as a referrer of its environment's anchor (a DSSE envelope signed by the promoter's
    `key` when given); returns it with its digest."""
    subject = anchor(event.env, name).descriptor()
    annotations = event.annotations()
    if key is None:
        desc = attach(target, subject, EVENT_TYPE, event.payload(), EVENT_MEDIA_TYPE, annotations)
    else:
        envelope = json.dumps(seal(event.payload(), key, EVENT_TYPE), sort_keys=True).encode()
        annotations[mt.ANN_SIGNER] = key.public.keyid
        desc = attach(target, subject, EVENT_TYPE, envelope, mt.DSSE_ENVELOPE, annotations)
    stored = replace(event, digest=desc.digest, signer=key.public.keyid if key is not None else None)
    # the writer's settle re-read need not fetch it back (for readers trusting its key, or none)
    _MEMO.put((desc.digest, subject.digest, _ids((key.public,) if key is not None else ())), stored)
    if key is None:
        _MEMO.put((desc.digest, subject.digest, ""), stored)
    return stored


def read_events(
    target: Target,
    env: str,
    name: str | None = None,
    *,
    workers: int = 8,
    keys: Sequence[PublicKey] = (),
) -> list[Event]:
    """Every event of `env`, each read from its own manifest and payload (module doc: why not from the
    listing's annotations), several at a time: a rollback during an incident waits on this. With `keys`,
    an event's `signer` says which of them verified it (None: unsigned, or by another key)."""
    subject = anchor(env, name).digest
    listed = list(dict.fromkeys(d.digest for d in target.referrers(subject, EVENT_TYPE)))
    if len(listed) > MAX_EVENTS:
        raise ContentError(
            f"the history of {env} in {target.describe()} lists {len(listed)} events, over the "
            f"{MAX_EVENTS} this tool reads",
            hint="the referrers listing of its anchor may have been tampered with; inspect it",
        )
    if not listed:
        return []
    trusted = _ids(keys)
    with ThreadPoolExecutor(min(workers, len(listed))) as pool:
        found = list(pool.map(lambda d: _MEMO.get_or_read((d, subject, trusted), target, keys), listed))
    return [e for e in found if e is not None and e.env == env]


def _ids(keys: Sequence[PublicKey]) -> str:
    return ",".join(sorted(k.keyid for k in keys))


class _Memo:
    """Events already read, by (event digest, anchor digest, the keys trusted). The digests fix every byte
    that was read and the keys fix the verdict on its signature, so an entry is true in any repository and
    never goes stale; it saves the second history read of every promote and rollback (before moving the
    tag, then to settle a race). Bounded: emptied when full."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._known: dict[tuple[str, str, str], Event | None] = {}
        self._lock = threading.Lock()

    def put(self, key: tuple[str, str, str], event: Event | None) -> None:
        with self._lock:
            if len(self._known) >= self._limit:
                self._known.clear()
            self._known[key] = event

    def get_or_read(
        self, key: tuple[str, str, str], target: Target, keys: Sequence[PublicKey] = ()
    ) -> Event | None:
        with self._lock:
            if key in self._known:
                return self._known[key]
        try:
            event = _read_event(target, key[0], key[1], keys)
        except NotFoundError:
            return None  # listed but gone (or not yet there): history lists what it can read; not kept
        self.put(key, event)
        return event


def _read_event(target: Target, dgst: str, subject: str, keys: Sequence[PublicKey] = ()) -> Event | None:
    """The event stored under `dgst`, or None when that is not one of this environment's events."""
    raw = target.get_manifest(dgst)
    try:
        doc = parse(raw.raw, raw.media_type)
    except ContentError:
        return None  # not a manifest at all: not ours to interpret
    if (
        not isinstance(doc, Manifest)
        or doc.subject is None
        or doc.subject.digest != subject
        or len(doc.layers) != 1
        or doc.layers[0].size > MAX_EVENT_BYTES
    ):
        return None
    with target.read_blob(doc.layers[0]) as chunks:
        payload = b"".join(chunks)
    signer = None
    try:
        if doc.layers[0].media_type == mt.DSSE_ENVELOPE:
            opened = open_envelope(payload, keys)
            if opened.payload_type != EVENT_TYPE:
                return None
            payload, signer = opened.payload, (opened.verified_by[0] if opened.verified_by else None)
        return replace(Event.from_json(canonical.loads(payload), dgst), signer=signer)
    except (ValueError, InputError, ContentError, RecursionError):
        return None


@dataclass(frozen=True)
class History:
    """Events in effect (`chain`, oldest first) and those that lost a race (`superseded`)."""

    env: str
    chain: tuple[Event, ...]
    superseded: tuple[Event, ...]
    unverified: tuple[Event, ...] = ()  # not signed by a key the policy names: never in effect

    @property
    def head(self) -> Event | None:
        return self.chain[-1] if self.chain else None

    def is_in_effect(self, event_digest: str | None) -> bool:
        return any(e.digest == event_digest for e in self.chain)

    def newest_first(self) -> list[tuple[Event, bool]]:
        """(event, in effect) newest first: by `when`, the chain's own order breaking ties."""
        rank = {e.digest: i for i, e in enumerate(self.chain)}
        both = [(e, True) for e in self.chain] + [(e, False) for e in (*self.superseded, *self.unverified)]
        return sorted(
            both, key=lambda p: (p[0].when, rank.get(p[0].digest, -1), p[0].digest or ""), reverse=True
        )

    @property
    def moves(self) -> tuple[Event, ...]:
        """The events in effect that moved the tag (promote, rollback), oldest first."""
        return tuple(e for e in self.chain if e.moves_tag)

    def last_move_to(self, digest: str) -> Event | None:
        """The newest event in effect that moved the environment to `digest`."""
        return next((e for e in reversed(self.moves) if e.to_digest == digest), None)

    def ever_moved_to(self, digest: str) -> bool:
        return any(e.to_digest == digest for e in self.moves)


def winner(siblings: list[Event]) -> Event:
    """Among events following the same head, the one in effect: earliest `when`, ties by digest."""
    return min(siblings, key=lambda e: (e.when, e.digest or ""))


def resolve(env: str, events: list[Event], trusted: bool = False) -> History:
    """`trusted`: keys were given, and only events one of them signed can be in effect."""
    # A digest names one event: a listing that repeats it (forged, or two writers' index edits) counts once.
    events = list({e.digest or id(e): e for e in events}.values())
    unverified = tuple(e for e in events if trusted and e.signer is None)
    events = [e for e in events if not trusted or e.signer is not None]
    known = {e.digest for e in events}
    children: dict[str | None, list[Event]] = {}
    for e in events:
        # An event following one we cannot see (dropped from a referrers index) competes as a root.
        parent = e.previous_event if e.previous_event in known and e.previous_event != e.digest else None
        children.setdefault(parent, []).append(e)
    chain: list[Event] = []
    in_chain: set[str | None] = set()
    level = children.get(None, [])
    # Every step adds an event not yet in the chain, so the walk ends within len(events) steps whatever
    # links the events claim (a cycle among them is never entered twice).
    while level:
        chosen = winner(level)
        if chosen.digest in in_chain:
            break
        chain.append(chosen)
        in_chain.add(chosen.digest)
        # an event dated before the one it follows is refused: a forged follower cannot claim to be first
        level = [
            e for e in children.get(chosen.digest, []) if e.digest not in in_chain and e.when >= chosen.when
        ]
    superseded = tuple(e for e in events if e.digest not in in_chain)
    return History(env, tuple(chain), superseded, unverified)


def load_history(
    target: Target, env: str, name: str | None = None, keys: Sequence[PublicKey] = ()
) -> History:
    """`keys`: the promoters' public keys the environment's policy names; when given, only events one of
    them signed are in effect (the others are listed as unverified)."""
    return resolve(env, read_events(target, env, name, keys=keys), trusted=bool(keys))


_MEMO = _Memo()


def has_history(target: Target, env: str, name: str | None = None) -> bool:
    """Whether any promotion event was ever recorded for `env` (one referrers listing)."""
    return bool(target.referrers(anchor(env, name).digest, EVENT_TYPE))
