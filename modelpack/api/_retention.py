"""`prune`: delete old version tags and their evidence, never what an environment needs
(retention/retention.py is the rule, retention/prune.py reads the facts and deletes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelpack.environment.place import Place
from modelpack.errors import UsageError
from modelpack.retention.prune import Deleted, Repository, execute, facts, read_repository
from modelpack.retention.retention import DEFAULT_HISTORY_DEPTH, Decision, Plan, Rule, parse_age, plan
from modelpack.targets import Targets

__all__ = ["PruneResult", "prune"]


@dataclass(frozen=True)
class PruneResult:
    repository: str
    dry_run: bool
    rule: Rule
    history_depth: int
    decisions: tuple[Decision, ...]  # every version, newest first
    deleted: tuple[Deleted, ...] = ()  # what was deleted, in order
    failure: str | None = None  # why the run stopped before the end (what was deleted is listed)
    notes: tuple[str, ...] = ()

    @property
    def deleted_versions(self) -> tuple[str, ...]:
        """The version tags that are gone (a manifest deleted takes every tag naming it)."""
        manifests = {d.digest for d in self.deleted if d.kind == "manifest"}
        tags = {d.version for d in self.deleted if d.kind == "tag"}
        return tuple(
            d.tag
            for d in self.decisions
            if not d.keep and (d.tag in tags or (not d.tag_only and d.digest in manifests))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "dryRun": self.dry_run,
            "rule": {
                "keepLast": self.rule.keep_last,
                "keep": list(self.rule.keep),
                "olderThanSeconds": self.rule.older_than,
                "historyDepth": self.history_depth,
            },
            "versions": [d.to_json() for d in self.decisions],
            "deleted": [d.to_json() for d in self.deleted],
            "deletedVersions": list(self.deleted_versions),
            "failure": self.failure,
            "notes": list(self.notes),
        }


def prune(
    targets: Targets,
    repository: str,
    *,
    keep_last: int | None = None,
    keep: Sequence[str] = (),
    older_than: str | None = None,
    history_depth: int = DEFAULT_HISTORY_DEPTH,
    used_by: Sequence[str] = (),
    dry_run: bool = False,
    local: bool = False,
    confirm: Callable[[Plan], bool] | None = None,
    clock: Callable[[], float] = time.time,
) -> PruneResult:
    """Delete the version tags of `repository` the rule selects (outside the newest `keep_last`, older
    than `older_than`, e.g. "90d"), with their referrers, keeping what environments name now, their
    rollback targets (last `history_depth` events), `keep` patterns and datasets kept models record
    (`used_by`: model repositories whose records name datasets of this one). `confirm(plan)` is asked
    before anything is deleted; False makes it a dry run."""
    if history_depth < 0:
        raise UsageError(f"--history must be 0 or more, not {history_depth}")
    rule = Rule(keep_last, tuple(keep), parse_age(older_than) if older_than else None, clock()).check()
    place, on_registry = _repository(targets, repository, local)
    others = [_repository(targets, u, local)[0] for u in used_by]
    repo = read_repository(place)
    decided = plan(repo.versions, facts(place, repo, history_depth, others), rule)
    result = PruneResult(
        place.display, True, rule, history_depth, decided.decisions, notes=_unguarded(repo, decided, used_by)
    )
    if not decided.deleted:
        return _with(result, dry_run, "nothing to delete")
    if dry_run:
        return _with(result, True, "dry run: nothing was deleted (pass --yes to delete)")
    if confirm is not None and not confirm(decided):
        return _with(result, True, "not confirmed: nothing was deleted")
    outcome = execute(place, decided, repo)
    notes = (*result.notes, *((_GC_NOTE,) if outcome.deleted and not on_registry else ()))
    return PruneResult(
        place.display, False, rule, history_depth, decided.decisions, outcome.deleted, outcome.failure, notes
    )


_GC_NOTE = "the tags are gone; run `modelpack gc` to free the blobs only they reached"


def _with(result: PruneResult, dry_run: bool, note: str) -> PruneResult:
    return PruneResult(
        result.repository,
        dry_run,
        result.rule,
        result.history_depth,
        result.decisions,
        notes=(*result.notes, note),
    )


def _unguarded(repo: Repository, decided: Plan, used_by: Sequence[str]) -> tuple[str, ...]:
    """Datasets are protected by the models that record them; models elsewhere are read only when named."""
    artifacts = {v.tag for v in repo.versions if v.artifact}
    loose = [d.tag for d in decided.deleted if d.tag in artifacts]
    if not loose or used_by:
        return ()
    return (
        f"note: {len(loose)} of the versions to delete carry no modelpack record (datasets?); models in "
        "other repositories keep the datasets they record only when named with --used-by REPO",
    )


def _repository(targets: Targets, text: str, local: bool) -> tuple[Place, bool]:
    where = targets.open(text, local=local)
    if where.ref is not None and where.kind != "layout":
        raise UsageError(
            f"{text!r} names a release, not a repository",
            hint=f"give the repository alone, e.g. {where.repository}",
        )
    return Place.of(where), where.kind == "registry"
