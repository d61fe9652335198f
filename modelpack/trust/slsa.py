"""SLSA v1 provenance (https://slsa.dev/provenance/v1) of a build: what went in, what came out, who built it.

Subjects are the release index, the serving image and the bundle. resolvedDependencies are the inputs a
rebuild needs the same: the git commit (with its remote, already scrubbed of credentials), each dataset
by digest, the lockfile by digest and the base image by digest. The CI run's identity arrives as a
`CiRun` the caller made from its environment (this layer reads no environment); without one the builder
is modelpack on an unidentified machine, which a policy can tell apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpack.record.git import GitInfo
from modelpack.record.record import DatasetEntry, LockSummary
from modelpack.trust.intoto import statement, subject

SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://modelpack.dev/build/v1"
LOCAL_BUILDER = "https://modelpack.dev/builder/local"
GITHUB_HOSTED = "https://github.com/actions/runner/github-hosted"
GITHUB_SELF_HOSTED = "https://github.com/actions/runner/self-hosted"
# What of GitHub Actions' environment identifies a run (none of it is a secret; GITHUB_TOKEN is not here).
GITHUB_ENV = (
    "GITHUB_ACTIONS",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_WORKFLOW_REF",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITHUB_EVENT_NAME",
    "RUNNER_ENVIRONMENT",
)


@dataclass(frozen=True)
class CiRun:
    """The GitHub Actions run a build happened in (the GITHUB_* values the caller picked out)."""

    values: Mapping[str, str]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> CiRun | None:
        if environ.get("GITHUB_ACTIONS") != "true" or not environ.get("GITHUB_RUN_ID"):
            return None
        return cls({k: environ[k] for k in GITHUB_ENV if environ.get(k)})

    @property
    def builder_id(self) -> str:
        hosted = self.values.get("RUNNER_ENVIRONMENT", "github-hosted") == "github-hosted"
        return GITHUB_HOSTED if hosted else GITHUB_SELF_HOSTED

    @property
    def invocation_id(self) -> str:
        v = self.values
        server = v.get("GITHUB_SERVER_URL", "https://github.com")
        run = f"{server}/{v.get('GITHUB_REPOSITORY', '')}/actions/runs/{v['GITHUB_RUN_ID']}"
        return f"{run}/attempts/{v['GITHUB_RUN_ATTEMPT']}" if v.get("GITHUB_RUN_ATTEMPT") else run


@dataclass(frozen=True)
class BuildFacts:
    name: str
    version: str
    index_digest: str
    image_digest: str
    bundle_digest: str
    modelpack_version: str
    git: GitInfo | None = None
    datasets: tuple[DatasetEntry, ...] = ()
    lock: LockSummary | None = None
    base_name: str | None = None
    base_digest: str | None = None
    builder: str = "daemonless"  # which image builder ran
    ci: CiRun | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)  # what was asked: version, base, builder


def provenance_statement(facts: BuildFacts) -> dict[str, Any]:
    f = facts
    subjects = [
        subject(f"{f.name}:{f.version}", f.index_digest),
        subject(f"{f.name}:{f.version} image", f.image_digest),
        subject(f"{f.name}:{f.version} bundle", f.bundle_digest),
    ]
    builder: dict[str, Any] = {
        "id": f.ci.builder_id if f.ci else LOCAL_BUILDER,
        "version": {"modelpack": f.modelpack_version},
    }
    internal: dict[str, Any] = {"imageBuilder": f.builder}
    metadata: dict[str, Any] = {}
    if f.ci is not None:
        internal["github"] = dict(sorted(f.ci.values.items()))
        metadata["invocationId"] = f.ci.invocation_id
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"name": f.name, **dict(sorted(f.parameters.items()))},
            "internalParameters": internal,
            "resolvedDependencies": resolved_dependencies(f),
        },
        "runDetails": {"builder": builder, "metadata": metadata},
    }
    return statement(subjects, SLSA_PREDICATE, predicate)


def resolved_dependencies(f: BuildFacts) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if f.git is not None:
        git: dict[str, Any] = {"name": "source", "digest": {"gitCommit": f.git.commit}}
        if f.git.remote:
            git["uri"] = f"git+{f.git.remote}"
        if f.git.dirty:
            git["annotations"] = {"dirty": True}
        out.append(git)
    for d in f.datasets:
        entry: dict[str, Any] = {"name": f"dataset:{d.name}"}
        if d.sha256:
            entry["digest"] = _digest_set(d.sha256)
        if d.uri:
            entry["uri"] = d.uri
        out.append(entry)
    if f.lock is not None:
        out.append({"name": f"lockfile:{f.lock.path}", "digest": _digest_set(f.lock.sha256)})
    if f.base_digest:
        base: dict[str, Any] = {"name": "base-image", "digest": _digest_set(f.base_digest)}
        if f.base_name:
            base["uri"] = f"oci://{f.base_name}"
        out.append(base)
    return out


def commit_of(predicate: Mapping[str, Any]) -> str | None:
    """The git commit a provenance predicate names, if any."""
    deps: Sequence[Any] = (predicate.get("buildDefinition") or {}).get("resolvedDependencies") or ()
    for d in deps:
        if isinstance(d, Mapping) and isinstance(d.get("digest"), Mapping) and "gitCommit" in d["digest"]:
            return str(d["digest"]["gitCommit"])
    return None


def _digest_set(value: str) -> dict[str, str]:
    algo, sep, hex_ = value.partition(":")
    return {algo: hex_} if sep else {"sha256": value}
