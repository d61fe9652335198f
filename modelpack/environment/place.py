"""Where an environment tag lives: a registry repository, an `oci:` layout, or a repository of the local
store. Every place has short tags (`1.4.0`, `prod`): the store's repository view maps them to its own
`NAME:TAG` names, so promote, rollback and history are written once.

`name` scopes the environment's anchor (history.anchor): one layout holds every repository of the local
store, so there an environment's history is per repository name; a registry repository is its own scope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelpack.environment.history import has_history
from modelpack.errors import NotFoundError, UsageError
from modelpack.oci import digest as digests
from modelpack.oci.target import Target

if TYPE_CHECKING:
    from modelpack.targets import Location

# Lowercase only: `Prod` beside `prod` would be two environments that people read as one.
_ENV = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# What a version tag looks like (1.4.0, v2, 2024.01.05-rc1): an environment named so would read as a release.
_VERSIONISH = re.compile(r"^[vV]?[0-9]")


@dataclass(frozen=True)
class Place:
    target: Target
    name: str | None  # the local store repository (scopes the anchor), else None
    display: str  # the repository as the user will recognise it

    @classmethod
    def of(cls, where: Location) -> Place:
        return cls(where.target, where.repository if where.is_local else None, where.repository)

    def ref_text(self, short: str) -> str:
        sep = "@" if digests.is_digest(short) else ":"
        return f"{self.display}{sep}{short}"


# Environment names read by name whatever a tag listing says (prune's guard): a listing that omits `prod`
# (a hostile or flaky registry) must not make prod's release look unnamed. Others are only as safe as the
# listing that shows them.
WELL_KNOWN = (
    "prod", "production", "staging", "stage", "dev", "development", "test", "qa", "uat", "canary",
    "preview", "sandbox", "live",
)  # fmt: skip


def is_environment_name(tag: str) -> bool:
    """Could name an environment (lowercase, not version-like, not a referrers tag): worth a history
    lookup when telling environments from versions among a repository's tags."""
    return bool(_ENV.match(tag)) and not _VERSIONISH.match(tag) and not tag.startswith(("sha256-", "sha512-"))


def environments(place: Place, tags: Iterable[str], *, naming: str | None = None) -> frozenset[str]:
    """Which of `tags` are environments: the one rule (ls, inspect, the catalog and prune use it). An
    environment is a tag with an environment's name and promotion history (one referrers listing each, in
    parallel; version-like tags are skipped); with `naming`, only those whose tag names that digest now
    (one more manifest read each)."""

    def is_env(tag: str) -> bool:
        if naming is not None:
            try:
                if place.target.get_manifest(tag).digest != naming:
                    return False
            except NotFoundError:
                return False
        return has_history(place.target, tag, place.name)

    candidates = [t for t in dict.fromkeys(tags) if is_environment_name(t)]
    if not candidates:
        return frozenset()
    with ThreadPoolExecutor(max_workers=min(8, len(candidates))) as pool:
        flags = list(pool.map(is_env, candidates))
    return frozenset(t for t, f in zip(candidates, flags, strict=True) if f)


def check_env(env: str) -> str:
    """An environment name must be a tag that cannot be mistaken for a version or a referrers tag."""
    if not _ENV.match(env):
        hint = f"use {env.lower()!r}" if _ENV.match(env.lower()) else "e.g. prod or staging"
        raise UsageError(
            f"environment {env!r} is not a valid name: lowercase letters, digits, '.', '_' and '-', starting "
            "with a letter or digit",
            hint=hint,
        )
    if _VERSIONISH.match(env):
        raise UsageError(
            f"environment {env!r} looks like a version tag",
            hint="name environments by role (prod, staging, canary); versions are what they point at",
        )
    if env.startswith(("sha256-", "sha512-")):
        raise UsageError(
            f"environment {env!r} has the form of a referrers fallback tag (sha256-...)",
            hint="pick another name, e.g. prod",
        )
    return env
