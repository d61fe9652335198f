"""Where an environment tag lives: a registry repository, an `oci:` layout, or a name in the local store.

In a registry repository or a layout, a tag is the version or the environment itself (`1.4.0`, `prod`). The
local store holds many releases in one layout, so its tags are `NAME:TAG` (`iris:1.4.0`, `iris:prod`): a
Place maps the user's short tag to the stored one, so promote, rollback and history are written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelpack.errors import UsageError
from modelpack.oci import digest as digests
from modelpack.oci.target import Target
from modelpack.targets import Targets

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# What a version tag looks like (1.4.0, v2, 2024.01.05-rc1): an environment named so would read as a release.
_VERSIONISH = re.compile(r"^[vV]?[0-9]")


@dataclass(frozen=True)
class Place:
    target: Target
    name: str | None  # the release name in the local store (tags are NAME:TAG), else None
    display: str  # the repository as the user will recognise it

    def tag(self, short: str) -> str:
        return f"{self.name}:{short}" if self.name else short

    def ref_text(self, short: str) -> str:
        sep = "@" if digests.is_digest(short) else ":"
        return f"{self.display}{sep}{short}"


def check_env(env: str) -> str:
    """An environment name must be a tag that cannot be mistaken for a version or a referrers tag."""
    if not _TAG.match(env):
        raise UsageError(
            f"environment {env!r} is not a valid tag",
            hint="use letters, digits, '_', '.' and '-', starting with a letter, e.g. prod or staging",
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


def open_release(targets: Targets, text: str) -> tuple[Place, str]:
    """REF (`HOST/REPO:TAG`, `HOST/REPO@DIGEST`, `oci:PATH:TAG`, local `NAME:VERSION`) -> (place, ref)."""
    resolved = targets.open(text)
    if resolved.ref is None:
        raise UsageError(f"{text!r} names no release", hint="add the version, e.g. REPO:1.4.0")
    if resolved.reference is None:  # the local store: its tags are NAME:VERSION
        name, _, version = resolved.ref.rpartition(":")
        return Place(resolved.target, name, name), version
    reference = resolved.reference
    display = reference.name if reference is not None else resolved.display
    return Place(resolved.target, None, display), resolved.ref


def open_repository(targets: Targets, text: str) -> Place:
    """REPO (`HOST/REPO`, `oci:PATH`, or a release NAME in the local store) -> its place."""
    if _may_be_local_name(text) and targets.store_path.exists():
        prefix = f"{text}:"
        if any(t.startswith(prefix) for t in targets.store.list_tags()):
            return Place(targets.store, text, text)
    resolved = targets.open(text, local=False)
    reference = resolved.reference
    if reference is not None and (reference.tag or reference.digest) and not reference.is_layout:
        raise UsageError(
            f"{text!r} names a release, not a repository",
            hint="give the repository alone, e.g. ghcr.io/acme/sentiment",
        )
    display = reference.name if reference is not None else resolved.display
    return Place(resolved.target, None, display)


def _may_be_local_name(text: str) -> bool:
    first = text.split("/", 1)[0]
    has_host = "/" in text and ("." in first or first == "localhost")
    return ":" not in text and "@" not in text and not has_host
