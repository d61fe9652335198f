"""A file or a directory -> a dataset artifact in the local store: CNCF dataset layers, record, manifest.

Layers: a file of DATASET_LARGE_FILE bytes or more is a layer of its own (a new version that changes one
such file re-sends that file and nothing else: the copy engine skips every blob the registry holds);
smaller files share one layer per top-level folder. Tar headers carry mtime 0 whatever the commit, so an
unchanged file is the same blob in every version. The layers are written by the bundle's own
`store_layer` (stat cache: an unchanged file is not read again), so the artifact is reproducible as a
bundle is: same files, same label, same SOURCE_DATE_EPOCH (or commit, or newest file) and same `who`
give the same digest.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from modelpack.bundle.epoch import created_at, created_epoch
from modelpack.bundle.layers import store_layer
from modelpack.bundle.plan import LayerPlan, group_layer
from modelpack.errors import InputError
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.filestat import file_key
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.tar import TarEntry
from modelpack.oci.untar import vcs_path
from modelpack.packfile.files import walk
from modelpack.record.dataset import DatasetRecord
from modelpack.record.datastats import (
    FileStats,
    RowCounter,
    class_totals,
    counts_fast,
    file_stats,
    format_of,
    label_note,
)
from modelpack.record.git import GitInfo
from modelpack.record.record import FileEntry
from modelpack.store.layout import LayoutStore
from modelpack.store.statcache import StatCache

DATASET_LARGE_FILE = 1 << 20
MAX_OWN_LAYERS = 1000  # registries cap manifests near 4 MiB; past this many, the smaller large files group
EMPTY_CONFIG = Descriptor.of(mt.OCI_EMPTY, mt.EMPTY_JSON)


@dataclass(frozen=True)
class DatasetInput:
    """What `dataset push` was given, besides the files."""

    name: str  # the repository, e.g. "acme/iris-data"
    version: str
    who: str
    label: str | None = None
    source: str | None = None
    description: str | None = None
    git: GitInfo | None = None


@dataclass(frozen=True)
class BuiltDataset:
    manifest: Manifest
    descriptor: Descriptor
    record: DatasetRecord
    reused_layers: int


def dataset_files(path: Path) -> tuple[str, list[tuple[str, Path]]]:
    """("file" | "directory", [(name in the artifact, path)]): a file is itself, a directory every regular
    file under it, as bundle/datasets.py hashes it (so the artifact's hash is the model record's)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"dataset path {path} does not exist", hint="name a file or a directory") from None
    except OSError as e:
        raise InputError(f"cannot read dataset path {path}: {e.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        if vcs_path(path.name):  # a worktree's `.git` file: `dataset pull` would refuse it
            raise InputError(f"dataset path {path}: {vcs_path(path.name)}", hint="name the data itself")
        return "file", [(path.name, path)]
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"dataset path {path} is neither a file nor a directory")
    found = walk(path)
    if not found:
        raise InputError(f"dataset directory {path} holds no file", hint="a dataset needs at least one file")
    return "directory", found


def plan_dataset(entries: Sequence[TarEntry], large: int = DATASET_LARGE_FILE) -> list[LayerPlan]:
    """Large files one layer each (the MAX_OWN_LAYERS largest at most), the rest grouped by top folder."""
    big = sorted((e for e in entries if e.size >= large), key=lambda e: (-e.size, e.arcname))[:MAX_OWN_LAYERS]
    own = {e.arcname for e in big}
    groups: dict[str, list[TarEntry]] = {}
    for e in entries:
        if e.arcname not in own:
            parts = PurePosixPath(e.arcname).parts
            groups.setdefault(parts[0] if len(parts) > 1 else "", []).append(e)
    plans = [group_layer(mt.MODEL_DATASET_TAR, [e]) for e in sorted(big, key=lambda e: e.arcname)]
    plans += [group_layer(mt.MODEL_DATASET_TAR, groups[k]) for k in sorted(groups)]
    return plans


def build_dataset(
    store: LayoutStore,
    cache: StatCache,
    path: Path,
    given: DatasetInput,
    *,
    environ: Mapping[str, str],
    large: int = DATASET_LARGE_FILE,
) -> BuiltDataset:
    """Store the artifact of `path` (untagged: the caller tags it once it is pushed) and return it."""
    kind, found = dataset_files(path)
    entries = [TarEntry.from_file(p, rel) for rel, p in found]
    known = {e.arcname: _cached_stats(cache, e, given.label) for e in entries}
    counters = {
        e.arcname: RowCounter(e.arcname)
        for e in entries
        if known[e.arcname] is None and counts_fast(e.arcname, given.label)
    }
    watch = {rel: c.feed for rel, c in counters.items()}
    layers: list[Descriptor] = []
    files: list[FileEntry] = []
    reused = 0
    for plan in plan_dataset(entries, large):
        stored = store_layer(store, cache, plan, 0, watch)
        layers.append(stored.descriptor)
        files += stored.files
        reused += stored.reused
        if not stored.reused:
            for e in plan.files:
                if e.arcname in counters and (counted := counters[e.arcname].result()) is not None:
                    known[e.arcname] = _store_stats(cache, e, counted, given.label)
    files.sort(key=lambda f: f.path.encode("utf-8"))
    stats: list[FileStats] = []
    notes: list[str] = []
    for e, (rel, p) in zip(entries, found, strict=True):
        got, note = known[rel] or _store_stats(cache, e, file_stats(rel, p, given.label), given.label)
        if got is not None:
            stats.append(got)
        if note is not None:
            notes.append(note)
    missing = label_note(given.label, stats)
    if missing:
        notes.append(missing)
    inputs = [(e.arcname, e.stat.mtime_ns // 1_000_000_000) for e in entries if e.stat]
    when, _ = created_epoch(environ, given.git, inputs)
    partial = DatasetRecord(
        name=given.name,
        version=given.version,
        created=created_at(when),
        who=given.who,
        sha256="sha256:" + "0" * 64,
        size=sum(f.size for f in files),
        kind=kind,
        files=tuple(files),
    )
    record = replace(
        partial,
        sha256=files[0].sha256 if kind == "file" else digests.of_bytes(partial.listing().encode()),
        stats=tuple(stats),
        classes=class_totals(stats),
        label=given.label,
        source=given.source,
        description=given.description,
        git=given.git.recorded() if given.git else None,
        notes=tuple(notes),
    )
    record_bytes = record.to_bytes()
    record_desc = store.put_blob_bytes(record_bytes, mt.DATASET_RECORD)
    store.write_blob(EMPTY_CONFIG, [mt.EMPTY_JSON])
    annotations = {
        mt.ANN_DATASET: _summary_text(record),
        mt.ANN_VERSION: given.version,
        mt.ANN_CREATED: record.created,
        mt.ANN_TITLE: given.name,
    }
    if given.source:
        annotations[mt.ANN_SOURCE] = given.source
    if given.git:
        annotations[mt.ANN_REVISION] = given.git.commit
    manifest = Manifest(
        config=EMPTY_CONFIG,
        layers=(*layers, record_desc),
        artifact_type=mt.DATASET_ARTIFACT,
        annotations=annotations,
    )
    desc = store.put_document(manifest)
    return BuiltDataset(manifest, desc, record, reused)


StatsAnswer = tuple[FileStats | None, str | None]


def _stats_key(e: TarEntry, label: str | None) -> list[object]:
    assert isinstance(e.source, Path) and e.stat is not None
    return ["dataset-stats", 1, label, e.arcname, *file_key(e.source, e.stat)]


def _cached_stats(cache: StatCache, e: TarEntry, label: str | None) -> StatsAnswer | None:
    """An unchanged file's statistics (or note) from the last push: not read, not parsed again."""
    if format_of(e.arcname) is None:
        return None, None
    hit = cache.get(_stats_key(e, label))
    if not (isinstance(hit, list) and len(hit) == 2):
        return None
    return (FileStats.from_json(hit[0]) if hit[0] else None), (str(hit[1]) if hit[1] else None)


def _store_stats(cache: StatCache, e: TarEntry, answer: StatsAnswer, label: str | None) -> StatsAnswer:
    got, note = answer
    if e.stat is not None:  # counted: the file matched its stat at both ends of the hasher's read
        cache.put(_stats_key(e, label), [got.to_json() if got else None, note], stats=[e.stat])
    return answer


def _summary_text(record: DatasetRecord) -> str:
    from modelpack.oci import canonical

    return canonical.dumps(record.summary()).decode()
