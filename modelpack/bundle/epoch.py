"""When a build or a dataset version was made: SOURCE_DATE_EPOCH, else the commit, else the newest input.

Its own module so `dataset push` reads it without importing the bundle builder (issue 26 item 2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from modelpack.errors import InputError
from modelpack.record.git import GitInfo


def created_at(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_epoch(environ: Mapping[str, str], git: GitInfo | None) -> int:
    """SOURCE_DATE_EPOCH when set (the reproducible-builds convention), else the commit time, else 0."""
    raw = environ.get("SOURCE_DATE_EPOCH")
    if raw is not None:
        if not raw.strip().isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds")
        return int(raw)
    return git.commit_time if git else 0


def created_epoch(
    environ: Mapping[str, str], git: GitInfo | None, inputs: Sequence[tuple[str, int]]
) -> tuple[int, str]:
    """`created` and where it came from: like build_epoch, but outside git the newest input's mtime
    (seconds, as `inputs` of (name, mtime) give it) rather than 1970. The tar entries keep build_epoch:
    an mtime in their headers would give an untouched weights layer a new digest whenever any file is
    saved."""
    if "SOURCE_DATE_EPOCH" in environ:
        return build_epoch(environ, git), "SOURCE_DATE_EPOCH"
    if git and git.commit_time:
        return git.commit_time, f"the time of commit {git.commit[:12]}"
    if not inputs:
        return 0, "no input file"
    name, when = max(inputs, key=lambda i: (i[1], i[0]))
    return when, f"the newest input file, {name} (no git commit; set SOURCE_DATE_EPOCH to choose it)"
