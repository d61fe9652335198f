"""Who moved an environment: the CI identity when running in CI, else `user@host`. Never a secret.

Only variables that CI systems document as public identity are read (actor, workflow, run or job id); a
token or password variable is never looked at, so none can end up in a recorded event.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Mapping


def _github(env: Mapping[str, str]) -> str | None:
    actor = env.get("GITHUB_ACTOR")
    if not actor:
        return None
    where = " ".join(
        p
        for p in (
            env.get("GITHUB_REPOSITORY", ""),
            env.get("GITHUB_WORKFLOW", ""),
            f"run {env['GITHUB_RUN_ID']}" if env.get("GITHUB_RUN_ID") else "",
        )
        if p
    )
    return f"{actor} (github actions: {where})" if where else f"{actor} (github actions)"


def _gitlab(env: Mapping[str, str]) -> str | None:
    login = env.get("GITLAB_USER_LOGIN")
    if not login:
        return None
    job = f" job {env['CI_JOB_ID']}" if env.get("CI_JOB_ID") else ""
    project = f" {env['CI_PROJECT_PATH']}" if env.get("CI_PROJECT_PATH") else ""
    return f"{login} (gitlab ci:{project}{job})"


def _simple(user_var: str, system: str, job_var: str) -> Callable[[Mapping[str, str]], str | None]:
    def read(env: Mapping[str, str]) -> str | None:
        user = env.get(user_var)
        if not user:
            return None
        job = f" {env[job_var]}" if env.get(job_var) else ""
        return f"{user} ({system}{job})"

    return read


_CI = (
    _github,
    _gitlab,
    _simple("BUILDKITE_BUILD_CREATOR", "buildkite build", "BUILDKITE_BUILD_NUMBER"),
    _simple("CIRCLE_USERNAME", "circleci build", "CIRCLE_BUILD_NUM"),
    _simple("BUILD_USER_ID", "jenkins", "BUILD_TAG"),
    _simple("BUILD_REQUESTEDFOR", "azure pipelines build", "BUILD_BUILDID"),
)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def who(
    environ: Mapping[str, str],
    user: Callable[[], str] = _local_user,
    host: Callable[[], str] = socket.gethostname,
) -> str:
    """`MODELPACK_ACTOR` when set, else the CI identity, else `user@host`."""
    if environ.get("MODELPACK_ACTOR"):
        return environ["MODELPACK_ACTOR"][:200]
    for read in _CI:
        found = read(environ)
        if found:
            return found[:200]
    return f"{user()}@{host()}"[:200]
