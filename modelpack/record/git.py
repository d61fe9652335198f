"""Where the build came from: the git commit, branch, remote and dirty state of the project directory.

The remote URL is recorded without any userinfo (CI checkouts often embed a token in it).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

Runner = Callable[[Sequence[str], Path], "str | None"]


# A repository's own config can name commands git runs on `status` (core.fsmonitor), hooks and a pager:
# the command line wins over every config file, so these switch them off whatever the repository says.
HARDENED = ("--no-pager", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null", "-c", "core.pager=cat",
            "-c", "core.untrackedCache=false")  # fmt: skip
_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat"}


def run_git(args: Sequence[str], cwd: Path) -> str | None:
    """Runs git, hardened; None when git is missing, the directory is no checkout, or the command fails."""
    env = {**os.environ, **_ENV}
    try:
        out = subprocess.run(["git", *HARDENED, *args], cwd=cwd, capture_output=True, text=True, timeout=30,
                             check=False, env=env)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def repository_root(directory: Path) -> Path | None:
    """The nearest folder at or above `directory` holding `.git`, found without running git."""
    here = Path(os.path.abspath(directory))
    for folder in (here, *here.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return None


@dataclass(frozen=True)
class GitInfo:
    """The record's `git` entry. commit_time and tag are known at build time only: the record keeps the
    first four fields, so a GitInfo read back from a record has commit_time 0 and tag None."""

    commit: str
    branch: str | None
    remote: str | None
    dirty: bool
    commit_time: int = 0  # seconds since the epoch: the default mtime of every tar entry
    tag: str | None = None  # an exact tag on HEAD, e.g. "v1.4.0"
    changed: tuple[str, ...] = ()  # tracked files with uncommitted changes, as git names them

    def dirty_warning(self) -> str | None:
        """One line for the build to show when the tree is dirty (the record keeps only the flag)."""
        if not self.dirty:
            return None
        more = len(self.changed) - 3
        names = ", ".join(self.changed[:3]) + (f" and {more} more" if more > 0 else "")
        files = f" ({names})" if names else ""
        return (
            f"uncommitted changes{files}: the release records commit {self.commit[:12]} with git.dirty true, "
            "and that commit does not reproduce it; commit, then rebuild"
        )

    def to_json(self) -> dict[str, object]:
        return {"commit": self.commit, "branch": self.branch, "remote": self.remote, "dirty": self.dirty}

    def recorded(self) -> GitInfo:
        """What a record keeps (and so what reading one back gives)."""
        return GitInfo(self.commit, self.branch, self.remote, self.dirty)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> GitInfo:
        return cls(
            commit=str(obj["commit"]),
            branch=opt_str(obj.get("branch")),
            remote=opt_str(obj.get("remote")),
            dirty=bool(obj.get("dirty", False)),
        )


def opt_str(value: object) -> str | None:
    """A JSON value that is a string or null, as the record's optional text fields are."""
    return None if value is None else str(value)


def scrub_url(url: str) -> str:
    """Drops credentials from a remote URL (https://user:token@host/x -> https://host/x)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def git_info(directory: Path, run: Runner = run_git, *, project: Path | None = None) -> GitInfo | None:
    """The commit `directory` is at. With `project` (the folder the user works in), git runs only when the
    repository is that folder's own or one above it: a repository nested inside it (a pulled or unpacked
    folder that brought its own `.git`) is not the project's, and its config is never read."""
    root = repository_root(directory)
    if root is None:
        return None
    if project is not None:
        mine = Path(os.path.abspath(project))
        if root != mine and root not in mine.parents and mine in root.parents:
            return None
    commit = run(["rev-parse", "HEAD"], directory)
    if not commit:
        return None
    branch = run(["rev-parse", "--abbrev-ref", "HEAD"], directory)
    remote = run(["config", "--get", "remote.origin.url"], directory)
    status = run(["status", "--porcelain", "--untracked-files=no", "--", "."], directory)
    when = run(["show", "-s", "--format=%ct", "HEAD"], directory)
    tag = run(["describe", "--tags", "--exact-match", "HEAD"], directory)
    return GitInfo(
        commit=commit,
        branch=None if branch in (None, "HEAD") else branch,
        remote=scrub_url(remote) if remote else None,
        dirty=bool(status),
        # porcelain lines are "XY path"; the output was stripped, so the first may have lost a blank X
        changed=tuple(line.split(None, 1)[1] for line in (status or "").splitlines() if " " in line.strip()),
        commit_time=int(when) if when and when.isdigit() else 0,
        tag=tag or None,
    )
