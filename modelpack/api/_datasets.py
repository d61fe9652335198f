"""`dataset push | pull | inspect | ls | diff | used-by`: datasets as artifacts of their own.

A push builds the artifact in the local store (stat cache: unchanged files are not read again) and copies
it with the copy engine, which asks the registry blob by blob: a version whose files are mostly unchanged
sends only the changed files' layers. Version tags are immutable as a model's are (`force` replaces one,
recorded as a referrer, like `push --force`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.dataset.compare import DatasetDiff, Use, diff_records, uses_in
from modelpack.dataset.read import DatasetView, load_dataset
from modelpack.errors import UsageError
from modelpack.oci import digest as digests
from modelpack.oci.copy import CopyResult, copy_graph
from modelpack.oci.target import ProgressFn, no_progress
from modelpack.record.dataset import DatasetRecord
from modelpack.targets import Location, Targets

__all__ = [
    "DatasetDiffResult",
    "DatasetInspectResult",
    "DatasetLsResult",
    "DatasetPullResult",
    "DatasetPushResult",
    "DatasetUsedByResult",
    "dataset_diff",
    "dataset_inspect",
    "dataset_ls",
    "dataset_pull",
    "dataset_push",
    "dataset_used_by",
]


@dataclass(frozen=True)
class DatasetPushResult:
    source: str
    destination: str
    digest: str
    record: DatasetRecord
    copy: CopyResult
    reused_layers: int
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        r, c = self.record, self.copy
        return {
            "source": self.source,
            "destination": self.destination,
            "digest": self.digest,
            "sha256": r.sha256,
            "size": r.size,
            "fileCount": r.count,
            "rows": r.rows,
            "blobsCopied": c.blobs_copied,
            "blobsSkipped": c.blobs_skipped,
            "bytesCopied": c.bytes_copied,
            "reusedLayers": self.reused_layers,
            "notes": [*r.notes, *self.notes],
        }


def dataset_push(
    targets: Targets,
    path: Path,
    destination: str,
    *,
    label: str | None = None,
    source: str | None = None,
    description: str | None = None,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: ProgressFn = no_progress,
) -> DatasetPushResult:
    """Publish the file or directory `path` as `destination`, `HOST/REPO:VERSION` (or `oci:PATH:TAG`)."""
    from modelpack.dataset.artifact import DatasetInput, build_dataset
    from modelpack.environment.actor import who
    from modelpack.record.git import git_info
    from modelpack.release.versions import check_overwrite, record_overwrite
    from modelpack.store.statcache import StatCache

    env = targets.environ if environ is None else environ
    dest = targets.open(destination, must_exist=False)
    if dest.kind == "store":
        raise UsageError(
            f"dataset push needs a registry or an oci: layout; {destination!r} has no registry host",
            hint=f"e.g. ghcr.io/acme/{dest.repository}:v1",
        )
    tag = dest.ref
    if tag is None or digests.is_digest(tag):
        raise UsageError(f"{destination!r} needs a version tag", hint=f"e.g. {dest.repository}:v1")
    registry = dest.kind == "registry" and dest.reference is not None
    given = DatasetInput(
        name=dest.reference.repository if registry and dest.reference else dest.repository,
        version=tag,
        who=who(env),
        label=label,
        source=source,
        description=description,
        git=git_info(path if path.is_dir() else path.parent, project=Path.cwd()),
    )
    store = targets.store
    with store.writing(), StatCache(store.stat_cache_path) as cache:
        built = build_dataset(store, cache, path, given, environ=env)
    shown = dest.ref_text(tag)
    note = check_overwrite(dest.target, tag, built.descriptor.digest, shown, force)
    local = targets.store_repository(dest.repository)
    result = copy_graph(local, dest.target, built.descriptor.digest, tag, progress=progress)
    root = dest.target.get_manifest(tag)
    if dest.kind == "registry":  # kept under its registry name (as a pull keeps one): safe from gc, so
        local.put_manifest(tag, root)  # the next push reads no unchanged file again
    if note is not None:
        note += "; " + record_overwrite(dest.target, root, tag, note, who(targets.environ))
    return DatasetPushResult(
        str(path), shown, root.digest, built.record, result, built.reused_layers, (note,) if note else ()
    )


@dataclass(frozen=True)
class DatasetPullResult:
    reference: str
    digest: str
    dest: Path
    files: tuple[str, ...]
    layers: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "dest": str(self.dest),
            "files": list(self.files),
            "layers": self.layers,
            "size": self.size,
        }


def dataset_pull(
    targets: Targets,
    reference: str,
    dest: Path,
    *,
    glob: str | None = None,
    force: bool = False,
    progress: ProgressFn = no_progress,
) -> DatasetPullResult:
    """Write the dataset's files (those `glob` selects) into `dest`, every layer digest and every file's
    sha256 verified against the record before anything is moved into place."""
    from modelpack.dataset.read import layers_for, refuse_vcs_paths, selector, verify_files
    from modelpack.errors import InputError
    from modelpack.unpack import extract

    where, view = _open(targets, reference)
    refuse_vcs_paths(view.record, where.display)
    keep = selector(glob)
    wanted = [f.path for f in view.record.files if keep(f.path)]
    if not wanted:
        raise InputError(
            f"--filter {glob!r} selects no file of {where.display}", hint="see `dataset inspect`"
        )
    layers = layers_for(view, wanted)
    chosen = set(wanted)
    written = extract(
        where.target,
        layers,
        dest,
        force=force,
        progress=progress,
        keep=chosen.__contains__,
        check=lambda staging, paths: verify_files(view.record, staging, paths, wanted),
    )
    size = sum(f.size for f in view.record.files if f.path in chosen)
    return DatasetPullResult(where.display, view.digest, dest, tuple(sorted(written)), len(layers), size)


@dataclass(frozen=True)
class DatasetInspectResult:
    reference: str
    digest: str
    record: DatasetRecord
    layers: int

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "layers": self.layers,
                "record": self.record.to_json()}  # fmt: skip


def dataset_inspect(targets: Targets, reference: str) -> DatasetInspectResult:
    where, view = _open(targets, reference)
    return DatasetInspectResult(where.display, view.digest, view.record, len(view.data_layers))


@dataclass(frozen=True)
class DatasetLsResult:
    repository: str
    versions: tuple[tuple[str, str, DatasetRecord], ...]  # (tag, digest, the record's summary)

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "versions": [{"tag": t, "digest": d, **r.summary()} for t, d, r in self.versions],
        }


def dataset_ls(targets: Targets, repository: str) -> DatasetLsResult:
    """Every version of a dataset repository with its summary (one manifest read each, in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    from modelpack.errors import ContentError, NotFoundError
    from modelpack.release.query import release_tags

    place = targets.open(repository)
    if place.ref is not None:
        raise UsageError(f"ls takes a repository: drop the tag from {repository!r}")
    tags = release_tags(place.target.list_tags())

    def one(tag: str) -> tuple[str, str, DatasetRecord] | None:
        try:
            view = load_dataset(place.target, tag, where=place.ref_text(tag), full=False)
        except (ContentError, NotFoundError):  # not a dataset, or deleted since the listing
            return None
        return tag, view.digest, view.record

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = [v for v in pool.map(one, tags) if v is not None]
    return DatasetLsResult(place.repository, tuple(found))


@dataclass(frozen=True)
class DatasetDiffResult:
    a: str
    b: str
    digest_a: str
    digest_b: str
    diff: DatasetDiff

    def to_json(self) -> dict[str, Any]:
        d = self.diff
        return {
            "a": self.a,
            "b": self.b,
            "digestA": self.digest_a,
            "digestB": self.digest_b,
            "same": d.same,
            "added": [c.to_json() for c in d.added],
            "removed": [c.to_json() for c in d.removed],
            "changed": [c.to_json() for c in d.changed],
            "rowsA": d.rows_a,
            "rowsB": d.rows_b,
            "rowsDelta": None if d.rows_a is None or d.rows_b is None else d.rows_b - d.rows_a,
            "classes": [c.to_json() for c in d.classes],
        }


def dataset_diff(targets: Targets, a: str, b: str) -> DatasetDiffResult:
    """Files added, removed and changed between two versions, row counts, and each class's shift. A bare
    tag as `b` (`dataset diff REG/REPO:2.0.0 3.0.0`) is that tag in a's repository, as `diff` reads it."""
    from modelpack.api._read import sibling

    wa, va = _open(targets, a)
    wb, vb = _open(targets, sibling(wa, b))
    return DatasetDiffResult(wa.display, wb.display, va.digest, vb.digest, diff_records(va.record, vb.record))


@dataclass(frozen=True)
class DatasetUsedByResult:
    reference: str
    digest: str
    uses: tuple[Use, ...]

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "uses": [u.to_json() for u in self.uses]}


def dataset_used_by(targets: Targets, reference: str, repositories: Sequence[str]) -> DatasetUsedByResult:
    """The versions of each model repository whose record names the dataset: by the artifact's digest (a
    `ref:` in modelpack.yaml), or by its content hash (a local copy), with the metrics measured on it."""
    from modelpack.release.query import read_versions, release_tags

    if not repositories:
        raise UsageError("name at least one model repository", hint="e.g. ghcr.io/acme/iris")
    where = targets.open(reference)
    view = load_dataset(where.target, where.need_ref("look up"), where=where.display, full=False)
    uses: list[Use] = []
    for text in repositories:
        place = targets.open(text)
        if place.ref is not None:
            raise UsageError(f"used-by takes model repositories: drop the tag from {text!r}")
        for v in read_versions(place.target, release_tags(place.target.list_tags())):
            assert v.release is not None
            for entry, matched, role, metrics in uses_in(v.release.record, view.digest, view.record.sha256):
                uses.append(Use(place.repository, v.tag, v.release.digest, entry, matched, role, metrics))
    return DatasetUsedByResult(where.display, view.digest, tuple(uses))


def _open(targets: Targets, reference: str) -> tuple[Location, DatasetView]:
    where = targets.open(reference)
    view = load_dataset(where.target, where.need_ref("read"), where=where.display)
    return where, view
