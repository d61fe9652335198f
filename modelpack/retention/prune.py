"""`prune`: read the facts the retention rule needs, then delete what its plan says, safely.

Reading. Every tag's manifest is read once (parallel GETs, bounded as every manifest read is): its digest,
its children (an index names the serving image and the bundle), and from the record annotation the
created time and the datasets it names (`datasets[i].digest`, `datasets[i].ref`, read from the JSON so a
record written before those fields existed reads as naming none). What a tag is comes from what it names,
not from its shape (`is_version`): environments are the tags `place.environments` says are (an
environment's name and promotion history: the rule ls uses too; their histories and undo stacks give the
rollback targets); a tag naming a release or a dataset record is a version whatever its name, unless it
is an alias (`latest` naming the release whose own version tag is here too); another artifact is a
version only under a tag that reads as one.

Deleting, on a registry, for one version digest D, in this order:
1. the referrers of D's children and of D (deepest first: a signature of a report before the report),
   then their `sha256-<hex>` fallback tags (and cosign's `sha256-<hex>.sig`/`.att`);
2. D itself, by digest (which removes every tag naming D: the plan never lists a digest a kept tag names);
3. D's children (image and bundle manifests) that no kept tag's manifest also names.
Why referrers before D: until D goes, its tag is the handle that finds everything again, so a run that
fails halfway is finished by running prune again, and no evidence is left orphaned under a digest
nothing names (evidence of a kept release is never touched: referrers hang off exactly one subject).
Why children after D: registries such as ECR refuse to delete a manifest an index still names, and a
child left behind by a failure is an untagged manifest, which every registry's own gc collects.
A version whose digest a kept tag names is untagged only (`delete_tag`: its manifest and evidence stay).
Before the first DELETE the registry is asked whether it allows deletes (a 405 is one clear line, and
nothing was touched) and every environment tag is read again by name: those the listing showed, those a
second listing shows, and the well-known names (place.WELL_KNOWN), so a listing that omitted `prod` (a
hostile or flaky registry) is caught: an environment the plan did not know of, or one that moved since
the plan was made, stops the run before it deletes anything (its rollback targets were never computed).
Right before each version's DELETE, every environment tag is read by name once more, and a version one
of them names then is not deleted: the run stops there. On the first refused DELETE the run stops; the
outcome says what was deleted, and everything after it (and everything kept) is untouched.
Residual risk, stated: an environment moved to a version between that last read and its DELETE (a few
milliseconds) loses its release, and an environment with a name outside WELL_KNOWN that every listing
omits is not known; promoting while pruning the same repository is not supported.

In the local store or an `oci:` layout deleting is dropping the tag from index.json; the referrers and
blobs nobody reaches any more are freed by `modelpack gc` (store/gc.py drops a referrer whose subject is
gone).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from modelpack.environment.history import has_history, load_history, short
from modelpack.environment.move import digest_of
from modelpack.environment.place import WELL_KNOWN, Place, environments, is_environment_name
from modelpack.environment.promote import undo_stack
from modelpack.errors import ContentError, ModelpackError, NotFoundError, RefusedError
from modelpack.evidence import labels
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.registry.client import RegistryRepository
from modelpack.registry.referrers import fallback_tag
from modelpack.release.query import release_tags
from modelpack.retention.retention import Facts, Plan, Version, parse_version

WORKERS = 8
MAX_REFERRER_DEPTH = 4
MAX_REFERRERS = 10_000


@dataclass(frozen=True)
class Repository:
    """What was read of the repository being pruned."""

    versions: tuple[Version, ...]
    others: tuple[Version, ...]  # environments and other names: never deleted
    environments: Mapping[str, str]  # env tag -> digest
    tags: tuple[str, ...]  # every tag, referrers fallback tags included


def read_repository(place: Place, *, refs_to: str | None = None, workers: int = WORKERS) -> Repository:
    """Every tag of `place` with what its manifest says; `refs_to`: the repository whose tags dataset refs
    are matched against (default: this one)."""
    tags = place.target.list_tags()
    named = release_tags(tags)  # without the referrers fallback tags
    display = refs_to or place.display

    def one(tag: str) -> Version | None:
        try:
            raw = place.target.get_manifest(tag)
        except NotFoundError:
            return None  # deleted since the listing
        v = read_version(tag, raw, display)
        if v.kind == "other":
            return v
        on = labels.read(place.target, raw.digest)  # one referrers listing: is it archived?
        return replace(v, archived=on[labels.ARCHIVED].describe()) if labels.ARCHIVED in on else v

    with ThreadPoolExecutor(max(1, min(workers, len(named) or 1))) as pool:
        found = [v for v in pool.map(one, named) if v is not None]
    env_tags = environments(place, [v.tag for v in found])
    digest_of_tag = {v.tag: v.digest for v in found}
    versions = tuple(v for v in found if is_version(v, env_tags, digest_of_tag))
    others = tuple(v for v in found if v not in versions)
    envs = {v.tag: v.digest for v in others if v.tag in env_tags}
    return Repository(versions, others, envs, tuple(tags))


def is_version(v: Version, envs: Set[str], tags: Mapping[str, str]) -> bool:
    """A tag prune may delete: no environment, and either it names a release or a dataset record (whatever
    the team calls it: `dataset-v1.0.0`, `model-bert-sst2-acc92-v5`) and is no alias (a name that reads
    as no version, `latest`, naming a release whose own version tag names the same digest), or it reads
    as a version (another artifact under a version tag, as prune always took)."""
    if v.tag in envs:
        return False
    if v.kind == "other":
        return parse_version(v.tag) is not None
    alias = (
        v.kind == "release"
        and v.version not in (None, v.tag)
        and tags.get(v.version or "") == v.digest
        and parse_version(v.tag) is None
    )
    return not alias


def read_version(tag: str, raw: RawManifest, display: str) -> Version:
    """The tag as the rule sees it; dataset refs naming `display` become tags it uses."""
    try:
        doc = parse(raw.raw, raw.media_type)
    except ContentError:
        return Version(tag, raw.digest, artifact=True)
    ann = doc.annotations or {}
    record: dict[str, Any] = {}
    try:
        loaded = canonical.loads(ann.get(mt.ANN_RECORD) or "{}")
        record = loaded if isinstance(loaded, dict) else {}
    except (ValueError, RecursionError):
        pass  # a damaged record: nothing to learn from it, the version is still a version
    created = _epoch(record.get("created")) or _epoch(ann.get(mt.ANN_CREATED))
    uses_d: set[str] = set()
    uses_t: set[str] = set()
    datasets = record.get("datasets")
    for entry in datasets if isinstance(datasets, list) else []:
        if not isinstance(entry, dict):
            continue
        dgst, ref = entry.get("digest"), entry.get("ref")
        if isinstance(dgst, str) and digests.is_digest(dgst):
            uses_d.add(dgst)
        if isinstance(ref, str):
            repo, sep, rest = ref.rpartition("@") if "@" in ref else ref.rpartition(":")
            if sep == "@" and digests.is_digest(rest):
                uses_d.add(rest)
            elif sep and repo == display:
                uses_t.add(rest)
    children = frozenset(d.digest for d in doc.manifests) if isinstance(doc, Index) else frozenset()
    artifact = not isinstance(doc, Index) and mt.ANN_RECORD not in ann
    kinds = {d.artifact_type for d in doc.manifests} if isinstance(doc, Index) else {doc.artifact_type}
    if mt.ANN_RECORD in ann or mt.MODEL_ARTIFACT in kinds:
        kind = "release"
    elif mt.DATASET_ARTIFACT in kinds:
        kind = "dataset"
    else:
        kind = "other"
    stated = record.get("version") or ann.get(mt.ANN_VERSION)
    version = stated if isinstance(stated, str) else None
    return Version(
        tag, raw.digest, created, frozenset(uses_d), frozenset(uses_t), children, artifact, kind, version
    )



def _epoch(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rollback_targets(place: Place, environments: Sequence[str], depth: int) -> dict[str, tuple[str, ...]]:
    """digest -> why it is a rollback target: among an environment's last `depth` events, or among the
    `depth` releases below the top of its undo stack (what repeated `rollback` walks back through), or
    named by any event of it that is not in effect (superseded or unverified)."""
    why: dict[str, dict[str, str]] = {}

    def add(dgst: str | None, env: str, reason: str) -> None:
        if dgst:
            why.setdefault(dgst, {}).setdefault(env, reason)

    def one(env: str) -> None:
        history = load_history(place.target, env, place.name)
        stack = undo_stack(history)
        for n, e in enumerate(reversed(stack[:-1][-depth:] if depth else []), start=1):
            add(e.to_digest, env, f"rollback target of {env} ({n} back: {e.version})")
        for e in history.chain[-depth:] if depth else []:
            add(e.to_digest, env, f"in {env}'s last {depth} events ({e.action} {e.when})")
            add(e.from_digest, env, f"in {env}'s last {depth} events (before the {e.action} of {e.version})")
        # An event outside the chain (lost a race, or forged to push the real history out of it) still
        # names what it names: prune keeps it, so no event written by hand can get prod's releases deleted.
        for e in (*history.superseded, *history.unverified):
            add(e.to_digest, env, f"named by an event of {env} not in effect ({e.action} {e.when})")
            add(e.from_digest, env, f"named by an event of {env} not in effect (before the {e.action})")

    with ThreadPoolExecutor(max(1, min(WORKERS, len(environments) or 1))) as pool:
        list(pool.map(one, environments))
    return {d: tuple(r for _, r in sorted(envs.items())) for d, envs in why.items()}


def used_elsewhere(places: Sequence[Place], display: str) -> tuple[dict[str, str], dict[str, str]]:
    """Datasets the models of other repositories record (every tag there counts as kept): by digest, and
    by tag of the repository `display`."""
    by_digest: dict[str, str] = {}
    by_tag: dict[str, str] = {}
    for other in places:
        seen = read_repository(other, refs_to=display)
        for v in (*seen.versions, *seen.others):
            for d in v.uses_digests:
                by_digest.setdefault(d, f"recorded by {other.ref_text(v.tag)}")
            for tag in v.uses_tags:
                by_tag.setdefault(tag, f"recorded by {other.ref_text(v.tag)}")
    return by_digest, by_tag


def facts(place: Place, repo: Repository, depth: int, used_by: Sequence[Place]) -> Facts:
    by_digest, by_tag = used_elsewhere(used_by, place.display) if used_by else ({}, {})
    return Facts(
        environments=repo.environments,
        rollback=rollback_targets(place, sorted(repo.environments), depth),
        other_tags=repo.others,
        used_digests=by_digest,
        used_tags=by_tag,
    )


@dataclass(frozen=True)
class Deleted:
    kind: str  # "referrer", "referrers tag", "manifest", "child", "tag"
    digest: str
    version: str  # the version tag it was deleted for

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "digest": self.digest, "version": self.version}


@dataclass(frozen=True)
class Outcome:
    deleted: tuple[Deleted, ...]
    failure: str | None  # why the run stopped early; None when it finished


def execute(place: Place, plan: Plan, repo: Repository) -> Outcome:
    """Delete what `plan` says, in the module docstring's order; stops at the first refusal."""
    target = place.target
    if isinstance(target, RegistryRepository):
        target.check_deletes()  # 405: the one clear line, before anything is touched
    envs = _check_environments(place, repo)
    guard = partial(
        _not_named_now, place, envs, {v.digest: v.children for v in (*repo.versions, *repo.others)}
    )
    done: list[Deleted] = []
    try:
        if isinstance(target, RegistryRepository):
            _delete_on_registry(target, plan, repo, done, guard)
        else:
            for d in reversed(plan.deleted):  # oldest first, as on a registry (a tag only: nothing to guard)
                if _gone_ok(partial(target.delete_tag, d.tag)):
                    done.append(Deleted("tag", d.digest, d.tag))
    except ModelpackError as e:
        kept = sum(1 for d in plan.decisions if d.keep)
        return Outcome(
            tuple(done),
            f"prune stopped: {e.message}; {len(done)} deleted before that (listed), {kept} kept "
            "versions untouched; run prune again to finish",
        )
    return Outcome(tuple(done), None)


def _check_environments(place: Place, repo: Repository) -> tuple[str, ...]:
    """Every environment tag read by name (module doc: which); the names that exist. Refuses when one the
    plan did not know of exists, or one it knew moved."""
    listed_again = [t for t in place.target.list_tags() if is_environment_name(t)]
    names = sorted({*repo.environments, *listed_again, *WELL_KNOWN})
    now = _read_by_name(place, names)
    for env in names:
        dgst = repo.environments.get(env)
        if (
            dgst is None
            and now[env] is not None
            and env not in repo.tags
            and has_history(place.target, env, place.name)
        ):
            raise RefusedError(
                f"{place.ref_text(env)} names {short(now[env])} but the tag listing prune planned from "
                "omitted it: its release and rollback targets were never protected; nothing was deleted",
                hint="the registry's tag listing is incomplete (flaky or tampered with); run prune again",
            )
        if dgst is not None and now[env] != dgst:
            raise RefusedError(
                f"{place.ref_text(env)} moved from {short(dgst)} to {short(now[env])} while prune was "
                "planning; nothing was deleted",
                hint="run prune again",
            )
    return tuple(env for env in names if now[env] is not None)


def _read_by_name(place: Place, names: Sequence[str]) -> dict[str, str | None]:
    with ThreadPoolExecutor(max(1, min(WORKERS, len(names)))) as pool:
        return dict(zip(names, pool.map(partial(digest_of, place.target), names), strict=True))


def _not_named_now(
    place: Place, envs: Sequence[str], children_of: Mapping[str, frozenset[str]], dgst: str, tag: str
) -> None:
    """Right before `tag` (`dgst`) is deleted: no environment tag names it, or a manifest it holds, now."""
    for env, named in _read_by_name(place, envs).items():
        if named is not None and (named == dgst or named in children_of.get(dgst, frozenset())):
            raise RefusedError(
                f"{place.ref_text(env)} names {short(named)} now, which prune was about to delete "
                f"({tag}); not deleted",
                hint="an environment moved while prune ran; run prune again",
            )


def _delete_on_registry(
    target: RegistryRepository,
    plan: Plan,
    repo: Repository,
    done: list[Deleted],
    guard: Callable[[str, str], None],
) -> None:
    children_of = {v.digest: v.children for v in (*repo.versions, *repo.others)}
    removed: set[str] = set()

    def delete(dgst: str, kind: str, version: str) -> None:
        if dgst in plan.protected or dgst in removed:
            return
        removed.add(dgst)
        if _gone_ok(partial(target.delete_manifest, dgst)):
            done.append(Deleted(kind, dgst, version))  # what was already gone is not listed as deleted

    for d in reversed(plan.deleted):  # oldest first
        if d.tag_only:
            if _gone_ok(partial(target.delete_tag, d.tag)):
                done.append(Deleted("tag", d.digest, d.tag))
            continue
        if d.digest in removed:
            continue  # another tag of the same digest: deleted with it
        guard(d.digest, d.tag)
        children = sorted(children_of.get(d.digest, frozenset()) - plan.protected)
        for node in [*children, d.digest]:
            refs = _referrers_deep(target, node)
            for ref in refs:
                delete(ref, "referrer", d.tag)
            for tag in _fallback_tags(repo.tags, [node, *refs]):
                with contextlib.suppress(NotFoundError):  # gone meanwhile
                    delete(target.resolve(tag).digest, "referrers tag", d.tag)
        delete(d.digest, "manifest", d.tag)
        for child in children:
            delete(child, "child", d.tag)


def _referrers_deep(target: Target, dgst: str) -> list[str]:
    """Referrers of `dgst`, and theirs, deepest first."""
    out: list[str] = []
    seen = {dgst}
    level = [dgst]
    for _ in range(MAX_REFERRER_DEPTH):
        nxt = list(
            dict.fromkeys(r.digest for s in level for r in target.referrers(s) if r.digest not in seen)
        )
        seen.update(nxt)
        out.extend(nxt)
        if len(out) > MAX_REFERRERS:
            raise ContentError(
                f"{short(dgst)} has over {MAX_REFERRERS} referrers: not pruned", hint="inspect its referrers"
            )
        level = nxt
        if not level:
            break
    return list(reversed(out))


def _fallback_tags(tags: Sequence[str], nodes: Sequence[str]) -> list[str]:
    names = [fallback_tag(n) for n in nodes]
    return [t for t in tags if any(t == n or t.startswith(n + ".") for n in names)]


def _gone_ok(step: Callable[[], None]) -> bool:
    """Run a delete; False when its object was already gone (what we wanted, but not our doing)."""
    try:
        step()
    except NotFoundError:
        return False
    return True
