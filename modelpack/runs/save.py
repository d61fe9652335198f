"""Where a run goes when it ends: the local store always (works offline), the registry when one is named.

The experiment is a repository name by the one naming rule (targets.py): `HOST/REPO` is a registry (the
store keeps its copy under that full name, as a pull does, so `runs push` can send it later), a bare
`NAME` a repository of the local store, `oci:PATH` a layout directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from modelpack.errors import ModelpackError, NotFoundError, UsageError
from modelpack.oci import mediatypes as mt
from modelpack.oci.copy import copy_graph
from modelpack.oci.target import Target
from modelpack.runs.artifact import manifest_of, run_manifest, run_tag
from modelpack.runs.listing import RUN_PREFIX, add_to_listing, list_runs, refuse_rewrite, write_run
from modelpack.runs.live import Finished, discard
from modelpack.targets import Location, Targets

TRACKING_REPO_ENV = "MODELPACK_TRACKING_REPO"


def default_experiment(cwd: Path) -> str:
    """`<directory>-runs`: a store repository of its own, never the model's (whose tags are releases)."""
    name = re.sub(r"[^a-z0-9]+", "-", cwd.resolve().name.lower()).strip("-") or "default"
    return f"{name}-runs"


@dataclass(frozen=True)
class Saved:
    run_id: str
    digest: str
    local: str  # the store repository
    pushed_to: str | None  # HOST/REPO:run-<id> when pushed
    push_error: str | None  # why a configured push did not happen (the run stays in the store)


def local_of(targets: Targets, place: Location) -> Target:
    if place.kind == "registry" and place.reference is not None:
        return targets.store_repository(place.reference.name)
    return place.target


def save(targets: Targets, finished: Finished, experiment: str) -> Saved:
    """Writes the finished run into the store, then pushes it when `experiment` names a registry or a
    layout. A failed push leaves the run in the store (`runs push` sends it later) and says why."""
    place = targets.open(experiment, must_exist=False)
    if place.ref is not None:
        raise UsageError(f"{experiment!r}: an experiment is a repository; drop the tag")
    local = local_of(targets, place)
    manifest, blobs = run_manifest(finished.record, finished.curves, finished.system, finished.files)
    run_id = finished.record.id
    with targets.store.writing():
        digest = write_run(local, manifest, blobs, run_id)
    discard(finished)
    if place.kind == "store":
        return Saved(run_id, digest, place.repository, None, None)
    try:
        push_run(local, place.target, run_id)
    except ModelpackError as e:
        return Saved(run_id, digest, place.repository, None, e.message)
    return Saved(run_id, digest, place.repository, place.ref_text(run_tag(run_id)), None)


def push_run(source: Target, dest: Target, run_id: str) -> str:
    """Copies one run (its blobs once) and lists it; a finished run already there with another digest is
    refused, the same digest is nothing to do."""
    tag = run_tag(run_id)
    raw = source.get_manifest(tag)
    manifest = manifest_of(raw, f"{source.describe()}:{tag}")
    there = refuse_rewrite(dest, run_id, raw.digest)
    if there != raw.digest:
        copy_graph(source, dest, tag)
    desc = manifest.descriptor(artifact_type=mt.RUN_ARTIFACT, annotations=dict(manifest.annotations))
    add_to_listing(dest, desc, run_id)
    return raw.digest


@dataclass(frozen=True)
class PushAll:
    pushed: tuple[str, ...]
    already: int


def push_missing(source: Target, dest: Target) -> PushAll:
    """Every run of `source` that `dest` lacks (`runs push`)."""
    mine = {t[len(RUN_PREFIX) :] for t in source.list_tags() if t.startswith(RUN_PREFIX)}
    there = {s.id for s in list_runs(dest).runs} if _exists(dest) else set()
    todo = sorted(mine - there)
    for run_id in todo:
        push_run(source, dest, run_id)
    return PushAll(tuple(todo), len(mine & there))


def _exists(target: Target) -> bool:
    try:
        target.list_tags()
    except NotFoundError:
        return False
    return True
