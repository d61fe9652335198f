"""Version labels: a state set on many versions at once and cleared again (`archived`), with who and why.

A label is set or cleared by a small referrer of the release (artifact type `LABEL_TYPE`), its whole
meaning in the descriptor's annotations, so one referrers listing per version (which ls, the catalog and
prune already make) says which labels are on: for each label, the newest referrer by time (then digest)
decides, set or cleared. Nothing is overwritten: the referrers are the label's history.

The lifecycle the issue asks for (Staging / Production / Archived): environments are the first two;
`archived` is this label. What it means to prune is retention's rule (retention/retention.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelpack.errors import UsageError
from modelpack.evidence.evidence import attach
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Target

LABEL_TYPE = mt.LABEL_ARTIFACT
ANN_LABEL = "dev.modelpack.label"
ANN_STATE = "dev.modelpack.label.state"  # "set" or "cleared"
ANN_WHO = "dev.modelpack.label.who"
ANN_WHEN = "dev.modelpack.label.when"  # RFC 3339 UTC
ANN_REASON = "dev.modelpack.label.reason"
ARCHIVED = "archived"
LABELS = (ARCHIVED,)
MAX_REASON = 500


@dataclass(frozen=True)
class Label:
    name: str
    on: bool
    who: str
    when: str
    reason: str
    digest: str = ""  # of the referrer that set or cleared it

    def describe(self) -> str:
        """`archived by ci@host on 2026-12-06: replaced by 2.x`"""
        what = self.name if self.on else f"{self.name} cleared"
        return f"{what} by {self.who} on {self.when[:10]}" + (f": {self.reason}" if self.reason else "")

    def to_json(self) -> dict[str, object]:
        return {"label": self.name, "on": self.on, "who": self.who, "when": self.when, "reason": self.reason}


def check(name: str, reason: str) -> None:
    if name not in LABELS:
        raise UsageError(f"unknown label {name!r}", hint=f"labels: {', '.join(LABELS)}")
    if not reason.strip():
        raise UsageError("--reason TEXT is required: a label is recorded with who set it and why")
    if len(reason) > MAX_REASON:
        raise UsageError(f"--reason is {len(reason)} characters long; keep it under {MAX_REASON}")


def write(target: Target, subject: Descriptor, label: Label) -> Label:
    """Set (or clear) `label` on the release `subject`; returns it with the referrer's digest."""
    check(label.name, label.reason)
    annotations = {
        ANN_LABEL: label.name,
        ANN_STATE: "set" if label.on else "cleared",
        ANN_WHO: label.who,
        ANN_WHEN: label.when,
        ANN_REASON: label.reason,
        mt.ANN_CREATED: label.when,
    }
    body = b'{"label": "' + label.name.encode() + b'"}'
    desc = attach(target, subject, LABEL_TYPE, body, "application/json", annotations)
    return Label(label.name, label.on, label.who, label.when, label.reason, desc.digest)


def current(referrers: Iterable[Descriptor]) -> dict[str, Label]:
    """The labels that are on, from a release's referrers listing (any artifact types mixed in): for
    each label, its newest referrer decides."""
    newest: dict[str, Label] = {}
    for d in referrers:
        if d.artifact_type != LABEL_TYPE:
            continue
        label = _from(d.annotations or {}, d.digest)
        if label is None:
            continue
        seen = newest.get(label.name)
        if seen is None or (label.when, label.digest) > (seen.when, seen.digest):
            newest[label.name] = label
    return {name: lb for name, lb in newest.items() if lb.on}


def read(target: Target, digest: str) -> dict[str, Label]:
    return current(target.referrers(digest, LABEL_TYPE))


def _from(ann: Mapping[str, str], digest: str) -> Label | None:
    name, state = ann.get(ANN_LABEL, ""), ann.get(ANN_STATE, "")
    if name not in LABELS or state not in ("set", "cleared"):
        return None  # a foreign or damaged label: not ours to act on
    return Label(
        name,
        state == "set",
        ann.get(ANN_WHO, "")[:200],
        ann.get(ANN_WHEN, ""),
        ann.get(ANN_REASON, "")[:MAX_REASON],
        digest,
    )
