"""A repository's naming rule for version tags: declared once in the registry, enforced by push.

Teams name versions their own way (`model-bert-sst2-acc92-v5`, `dataset-v1.0.0`); modelpack does not
guess a convention from the tag's shape. A repository may declare one: a regular expression every version
tag pushed there must match in full. It is stored as a referrer of the repository's anchor (the same
anchor scheme environments use, under a name no environment can take), newest wins, with who and when,
so `push` from any machine reads the same rule (one referrers listing).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from modelpack.environment.history import anchor, ensure_anchor
from modelpack.errors import ContentError, UsageError
from modelpack.evidence.evidence import attach, read_payload
from modelpack.oci import mediatypes as mt
from modelpack.oci.target import Target

NAMING_TYPE = mt.NAMING_ARTIFACT
_SCOPE = "_repository"  # not a valid environment name (check_env), so no environment's anchor is this one
MAX_PATTERN = 300
MAX_BYTES = 16 * 1024


@dataclass(frozen=True)
class Naming:
    pattern: str  # a regular expression a version tag must match in full
    who: str
    created: str
    digest: str = ""

    def matches(self, tag: str) -> bool:
        return re.fullmatch(self.pattern, tag) is not None

    def to_json(self) -> dict[str, str]:
        return {"pattern": self.pattern, "who": self.who, "created": self.created, "digest": self.digest}


def check_pattern(pattern: str) -> str:
    if not pattern or len(pattern) > MAX_PATTERN:
        raise UsageError(f"a naming pattern is 1 to {MAX_PATTERN} characters, not {len(pattern)}")
    try:
        re.compile(pattern)
    except re.error as e:
        raise UsageError(f"naming pattern {pattern!r} is not a regular expression: {e}") from None
    return pattern


def write_naming(target: Target, naming: Naming, name: str | None = None) -> Naming:
    check_pattern(naming.pattern)
    subject = ensure_anchor(target, _SCOPE, name)
    payload = json.dumps({"pattern": naming.pattern, "who": naming.who, "created": naming.created}).encode()
    desc = attach(target, subject, NAMING_TYPE, payload, "application/json", {mt.ANN_CREATED: naming.created})
    return Naming(naming.pattern, naming.who, naming.created, desc.digest)


def read_naming(target: Target, name: str | None = None) -> Naming | None:
    """The rule in force (the newest), or None when the repository declares none."""
    listed = target.referrers(anchor(_SCOPE, name).digest, NAMING_TYPE)
    found = [d for d in listed if d.artifact_type == NAMING_TYPE]
    if not found:
        return None
    newest = max(found, key=lambda d: ((d.annotations or {}).get(mt.ANN_CREATED, ""), d.digest))
    try:
        obj = json.loads(read_payload(target, newest, MAX_BYTES))
        pattern = check_pattern(str(obj["pattern"]))
        return Naming(pattern, str(obj.get("who", "")), str(obj.get("created", "")), newest.digest)
    except (ValueError, KeyError, TypeError, UsageError) as e:
        raise ContentError(f"the naming rule {newest.digest} is malformed: {e}") from None


def enforce(target: Target, tag: str, shown: str, name: str | None = None) -> None:
    """Refuse to push `tag` where the repository's rule does not allow it (no rule: anything goes)."""
    naming = read_naming(target, name)
    if naming is None or naming.matches(tag):
        return
    raise UsageError(
        f"refusing to push {shown}: this repository names versions by {naming.pattern!r} "
        f"(declared by {naming.who} on {naming.created[:10]}), and {tag!r} does not match",
        hint="push under a tag that matches, or change the rule: modelpack naming REPO PATTERN",
    )
