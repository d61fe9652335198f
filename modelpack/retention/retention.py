"""The retention rule of `modelpack prune`: versions and facts in, a frozen plan of keep/delete out.

Pure: nothing here reads a registry or a clock (the caller passes `now`), so every rule is tested on
plain values. What reads the facts and what deletes is `retention/prune.py`.

A version tag is deleted only when the rule asks for it (outside the newest `keep_last`, or older than
`older_than`; with both, it must be both) and nothing protects it. What protects a version, in the order
the reasons are listed:
- an environment tag names its digest now;
- an environment's history names it among its last K events, or its undo stack (promote.undo_stack) holds
  it among the K releases a repeated `rollback` walks back through: the rollback targets;
- it matches a `--keep` pattern (milestones, fnmatch syntax: `1.0.0`, `*-lts`);
- it is a dataset version that a kept model's record names (by manifest digest or by `ref`).
A version of unknown age is kept under `--older-than`: age is never guessed. An archived version
(evidence/labels.py) takes no place among the newest `keep_last`: those are the newest live versions, and
an archived one is deleted unless something above protects it (`--older-than` judges it as any other).

"Newest" (`newest_first`): when every tag reads as a version, version order (1.10.0 after 1.9.0); tags
that tie on their version (the generated workflow's `<version>-<UTC commit time>-<short sha>`, or the
older `<version>-<short sha>`, whose sha may be all digits) are ordered by the build stamp, then by the
record's creation time. When some tag does not read as a version (team names such as `dataset-v1.0.0`,
`model-bert-sst2-acc92-v5`), there is no common version scale and every tag is ordered by the record's
creation time (then version, then name). A version without a creation time counts as the oldest.
Registries keep no push time, so creation time is the last word.

Registries delete a manifest by digest, and that removes every tag naming it. So a deleted tag whose digest
a kept tag also names is deleted as a tag only (`tag_only`): the manifest and its referrers stay.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion
from packaging.version import Version as Pep440

from modelpack.errors import UsageError

DEFAULT_HISTORY_DEPTH = 10
_AGE = re.compile(r"^([0-9]{1,6})([hdw])$")
_UNIT = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """`90d`, `12h`, `2w` -> seconds."""
    m = _AGE.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise UsageError(
            f"--older-than {text!r} is not an age",
            hint="a whole number then h, d or w (hours, days, weeks), e.g. 90d",
        )
    return int(m.group(1)) * _UNIT[m.group(2)]


def format_age(seconds: float) -> str:
    for unit in ("w", "d", "h"):
        if seconds >= _UNIT[unit] and seconds % _UNIT[unit] == 0:
            return f"{int(seconds // _UNIT[unit])}{unit}"
    return f"{seconds / 3600:.1f}h"


@dataclass(frozen=True)
class Version:
    """One tag as the rule sees it: what it names and what its record says."""

    tag: str
    digest: str
    created: float | None = None  # seconds since the epoch; None when nothing says
    uses_digests: frozenset[str] = frozenset()  # dataset manifest digests its record names
    uses_tags: frozenset[str] = frozenset()  # dataset tags of this repository its record names (by ref)
    children: frozenset[str] = frozenset()  # manifests it names (an index: the image and the bundle)
    artifact: bool = False  # no modelpack record: a dataset or another plain artifact
    kind: str = "release"  # what the tag names: "release", "dataset" (a dataset record) or "other"
    version: str | None = None  # the version its record states (a release's), when it states one
    archived: str | None = None  # "archived by WHO on DAY: WHY" when the archived label is on


# `<version>-<short sha>` or `<version>-<YYYYMMDDHHMMSS>-<short sha>`: a build of <version>, not a PEP 440
# post-release (an all-digit sha parses as one) nor "no version" (a sha with a letter does not parse).
_BUILD = re.compile(r"^(?P<base>.+?)-(?:(?P<stamp>[0-9]{14})-)?(?P<sha>[0-9a-f]{7,40})$")


@dataclass(frozen=True)
class Facts:
    """What protects versions, read by the caller."""

    environments: Mapping[str, str] = field(default_factory=dict)  # env tag -> digest it names now
    rollback: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # digest -> why it is a target
    other_tags: Sequence[Version] = ()  # tags that are not versions (envs, latest): never deleted
    used_digests: Mapping[str, str] = field(default_factory=dict)  # digest -> "recorded by REPO:TAG"
    used_tags: Mapping[str, str] = field(default_factory=dict)  # tag -> "recorded by REPO:TAG"


@dataclass(frozen=True)
class Rule:
    keep_last: int | None = None
    keep: tuple[str, ...] = ()
    older_than: float | None = None  # seconds
    now: float = 0.0

    def check(self) -> Rule:
        if self.keep_last is None and self.older_than is None:
            raise UsageError(
                "prune needs a rule: --keep-last N, --older-than AGE, or both",
                hint="e.g. modelpack prune ghcr.io/acme/iris --keep-last 20 --older-than 90d",
            )
        if self.keep_last is not None and self.keep_last < 0:
            raise UsageError(f"--keep-last must be 0 or more, not {self.keep_last}")
        return self


@dataclass(frozen=True)
class Decision:
    tag: str
    digest: str
    keep: bool
    reasons: tuple[str, ...]
    tag_only: bool = False  # deleted as a tag; its digest stays (a kept tag names it)

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "digest": self.digest,
            "action": "keep" if self.keep else ("untag" if self.tag_only else "delete"),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Plan:
    decisions: tuple[Decision, ...]  # newest version first
    protected: frozenset[str]  # digests a kept tag names, or a kept index names: never deleted

    @property
    def deleted(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if not d.keep)

    @property
    def manifests(self) -> tuple[str, ...]:
        """Digests to delete with their referrers, oldest version first, each once."""
        return tuple(dict.fromkeys(d.digest for d in reversed(self.deleted) if not d.tag_only))


def plan(versions: Iterable[Version], facts: Facts, rule: Rule) -> Plan:
    rule.check()
    by_tag = {v.tag: v for v in versions}
    newest_first = order_newest_first(by_tag.values())
    envs_of: dict[str, list[str]] = {}
    for env, dgst in sorted(facts.environments.items()):
        envs_of.setdefault(dgst, []).append(env)
    first: dict[str, tuple[bool, list[str]]] = {}
    rank = 0
    for v in newest_first:  # an archived version takes no --keep-last place: the newest N are live ones
        first[v.tag] = _judge(v, None if v.archived else rank, facts, envs_of, rule)
        rank += 0 if v.archived else 1
    # Datasets a kept model names are kept: a model here, or one of the repositories the caller read.
    kept_models = [v for v in newest_first if first[v.tag][0]] + list(facts.other_tags)
    used_d = {d: f"recorded by kept model {m.tag}" for m in kept_models for d in m.uses_digests}
    used_t = {t: f"recorded by kept model {m.tag}" for m in kept_models for t in m.uses_tags}
    used_d.update(facts.used_digests)
    used_t.update(facts.used_tags)
    settled: list[tuple[Version, bool, list[str]]] = []
    for v in newest_first:
        keep, reasons = first[v.tag]
        if not keep and (v.digest in used_d or v.tag in used_t):
            why = used_d.get(v.digest) or used_t[v.tag]
            keep, reasons = True, [f"a dataset version {why}"]
        settled.append((v, keep, reasons))
    holders: dict[str, str] = {}
    for k in [*(v for v, keep, _ in settled if keep), *facts.other_tags]:
        holders.setdefault(k.digest, f"the kept tag {k.tag} names it")
        for child in k.children:
            holders.setdefault(child, f"the kept release {k.tag} contains it")
    protected = frozenset(holders)
    decisions = []
    for v, keep, reasons in settled:
        tag_only = not keep and v.digest in protected
        if tag_only:
            reasons = [*reasons, f"its manifest stays: {holders[v.digest]}"]
        decisions.append(Decision(v.tag, v.digest, keep, tuple(reasons), tag_only))
    return Plan(tuple(decisions), protected)


def parse_version(tag: str) -> tuple[Pep440, str] | None:
    """(version, build stamp) of a tag, or None when it reads as no version; a build tag's version is its
    base (`1.2.0-20261206120000-1a2b3c4` and `1.2.0-1234567` are builds of 1.2.0)."""
    m = _BUILD.match(tag)
    if m:
        try:
            return Pep440(m["base"]), m["stamp"] or ""
        except InvalidVersion:
            pass
    try:
        return Pep440(tag), ""
    except InvalidVersion:
        return None


def order_newest_first(versions: Iterable[Version]) -> list[Version]:
    """Newest first, by the module doc's rule: versions, then build stamp and creation time where they
    tie; creation time alone when some tag reads as no version."""
    vs = list(versions)
    parsed = {v.tag: parse_version(v.tag) for v in vs}
    created = {v.tag: v.created if v.created is not None else float("-inf") for v in vs}
    if all(parsed.values()):

        def by_version(v: Version) -> tuple[Any, ...]:
            version, stamp = parsed[v.tag] or (Pep440("0"), "")
            return (version, stamp, created[v.tag], v.tag)

        return sorted(vs, key=by_version, reverse=True)

    def by_time(v: Version) -> tuple[Any, ...]:
        p = parsed[v.tag]
        return (created[v.tag], 1 if p else 0, p[0] if p else Pep440("0"), p[1] if p else "", v.tag)

    return sorted(vs, key=by_time, reverse=True)


def _judge(
    v: Version, rank: int | None, facts: Facts, envs_of: Mapping[str, list[str]], rule: Rule
) -> tuple[bool, list[str]]:
    protect = [f"{env} names it now" for env in envs_of.get(v.digest, [])]
    protect += list(facts.rollback.get(v.digest, ()))
    protect += [f"matches --keep {p}" for p in rule.keep if fnmatch.fnmatchcase(v.tag, p)]
    if protect:
        return True, protect
    keep: list[str] = []
    drop: list[str] = []
    if rule.keep_last is not None:
        if rank is None:
            drop.append(f"{v.archived}: archived versions take no --keep-last place")
        elif rank < rule.keep_last:
            keep.append(f"among the newest {rule.keep_last}")
        else:
            drop.append(f"not among the newest {rule.keep_last}")
    if rule.older_than is not None:
        age = format_age(rule.older_than)
        if v.created is None:
            keep.append("its age is unknown (no created time)")
        elif rule.now - v.created <= rule.older_than:
            keep.append(f"newer than {age}")
        else:
            drop.append(f"older than {age}")
    return (True, keep) if keep else (False, drop)
