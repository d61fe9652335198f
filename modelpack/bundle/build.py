"""Packfile -> bundle artifact in the local store: layers, model config, record, manifest, tag.

Speed comes from the stat cache: a layer whose files have the same stat identity as last time is not
read again (its digest and size come from the cache, and its blob is already in the store), so an
unchanged 10 GB model rebuilds in milliseconds. A cold build reads each file once: it is hashed for the
record and for its layer in the same pass that writes the layer into the store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelpack.bundle import frameworks, plan
from modelpack.bundle.datasets import hash_datasets
from modelpack.bundle.epoch import build_epoch, created_at, created_epoch
from modelpack.bundle.formats import check_model_format
from modelpack.bundle.lockfile import Lock, load_lock
from modelpack.bundle.modelconfig import model_config
from modelpack.bundle.picklescan import enforce, scan_bundle_files
from modelpack.errors import InputError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.tar import TarEntry
from modelpack.oci.untar import bundle_path
from modelpack.packfile import Packfile
from modelpack.packfile.files import walk
from modelpack.packfile.gates import check_gate_metrics
from modelpack.packfile.schema import DatasetSpec
from modelpack.packfile.version import resolve_version
from modelpack.record.curves import Curves
from modelpack.record.dataset import PublishedDataset
from modelpack.record.git import GitInfo
from modelpack.record.record import (
    FileEntry,
    Metric,
    ParamValue,
    Record,
    RunLink,
    ServingInfo,
    TestPlan,
    build_environment,
)
from modelpack.store.layout import LayoutStore
from modelpack.store.statcache import StatCache

from modelpack.bundle.curves import read_history, store_history  # isort: skip
from modelpack.bundle.layers import store_layer  # isort: skip


@dataclass(frozen=True)
class FromRun:
    """What `build --run` takes from the experiment run instead of the project's files: its params, final
    metrics, curves and the datasets it read (by the digest it read, whatever is on disk now)."""

    link: RunLink
    params: Mapping[str, ParamValue]
    metrics: Mapping[str, Metric]
    curves: Curves | None
    datasets: tuple[DatasetSpec, ...]
    published: Mapping[str, PublishedDataset]
    packages: Mapping[str, str] = field(default_factory=dict)  # the training environment's


@dataclass(frozen=True)
class BundleResult:
    name: str
    version: str
    tag: str  # the local store tag, "name:version"
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    record: Record
    lock: Lock  # parsed once here; the image builder installs its pins
    reused_layers: int = 0  # layers answered from the stat cache without reading a file
    created_from: str = ""  # where `created` came from, for the one line the build says about it
    warnings: tuple[str, ...] = ()  # one line each, for the caller to show: the build went ahead


def _input_times(pf: Packfile, plans: Sequence[plan.LayerPlan]) -> list[tuple[str, int]]:
    """(name, mtime in seconds) of every file the build reads: the bundle's files and the packfile's."""
    out = [(e.arcname, e.stat.mtime_ns // 1_000_000_000) for p in plans for e in p.files if e.stat]
    history = pf.metrics_history.path if pf.metrics_history else None
    for path in (pf.path, pf.metrics_file, pf.params_file, history):
        if path is not None:
            out.append((_rel(path, pf.root), int(os.stat(path).st_mtime)))
    return out


def _entries(files: Sequence[Path], root: Path, folder: str) -> list[TarEntry]:
    return [TarEntry.from_file(f, f"{folder}/{f.relative_to(root).as_posix()}") for f in files]


def _code_files(pf: Packfile) -> list[Path]:
    """The code, plus what a release must carry to be served and tested from the registry alone:
    the lockfile the image installs and the golden cases `modelpack test` runs."""
    extra = [pf.dependencies.lockfile]
    if pf.tests.cases is not None:
        extra.append(pf.tests.cases)
    seen = {p.resolve() for p in pf.code.files}
    return [*pf.code.files, *(p for p in extra if p.resolve() not in seen)]


def build_bundle(
    pf: Packfile,
    store: LayoutStore,
    cache: StatCache,
    *,
    version: str | None = None,
    git: GitInfo | None = None,
    environ: Mapping[str, str] | None = None,
    published: Mapping[str, PublishedDataset] | None = None,
    from_run: FromRun | None = None,
    allow_version_mismatch: bool = False,
) -> BundleResult:
    """`published`: the packfile's dataset `ref:`s, resolved by the caller (they need a registry).
    `from_run`: params, metrics, curves and datasets taken from a run instead (`build --run`)."""
    environ = environ or {}
    version = resolve_version(pf.version, version, pf.root, packfile_name=pf.path.name)
    epoch = build_epoch(environ, git)
    # What would otherwise fail only at `modelpack test` or at serve time, checked before any file is hashed.
    metrics = dict(from_run.metrics) if from_run else dict(pf.metrics)
    check_gate_metrics(pf.tests.gates, list(metrics), where=pf.path.name)
    models = [(f"models/{f.relative_to(pf.root).as_posix()}", f) for f in pf.model.files]
    check_model_format(pf.model.format, models, where=pf.path.name)
    lock_name = _rel(pf.dependencies.lockfile, pf.root)
    lock = load_lock(pf.dependencies.lockfile, display=lock_name)
    lock.check_python(pf.dependencies.python, where=lock_name)
    made_with = frameworks.model_versions(models, pf.model.format)
    if from_run is not None:
        made_with += frameworks.recorded_versions(from_run.packages, f"run {from_run.link.id}")
    checks = frameworks.check_versions(lock, made_with, allow=allow_version_mismatch, where=pf.path.name)
    checks += frameworks.check_opsets(lock, models, allow=allow_version_mismatch, where=pf.path.name)
    datasets = hash_datasets(pf.datasets, hash_file=cache.file_digest, published=published)
    curves = read_history(pf)
    if from_run is not None:  # the run's datasets (the packfile keeps those the run did not read)
        datasets = (
            *hash_datasets(from_run.datasets, hash_file=cache.file_digest, published=from_run.published),
            *datasets,
        )
        curves = from_run.curves

    packaged = [d for d in pf.datasets if d.package and d.path is not None]
    dataset_entries: list[TarEntry] = []
    for d in packaged:
        assert d.path is not None
        found = [(d.path.name, d.path)] if d.path.is_file() else walk(d.path, ignore=True)
        dataset_entries += [TarEntry.from_file(f, f"datasets/{d.name}/{rel}") for rel, f in found]

    plans = plan.plan_layers(
        model=_entries(pf.model.files, pf.root, "models"),
        code=_entries(_code_files(pf), pf.root, "code"),
        docs=_entries(pf.doc_files, pf.root, "docs"),
        datasets=dataset_entries,
    )
    for e in (e for p in plans for e in p.files):
        why = bundle_path(e.arcname)  # what unpack would refuse (a listed `.hg/hgrc`), refused here first
        if why:
            raise InputError(f"{e.arcname}: {why}; a bundle cannot hold it", hint="remove it from the paths")
    # Before anything is stored: a pickle that would run code refuses the build unless the packfile allows it.
    sources = [(e.arcname, e.source) for p in plans for e in p.files if isinstance(e.source, Path)]
    security = enforce(scan_bundle_files(sources), pf.security.allow_pickle_imports, where=pf.path.name)
    when, created_from = created_epoch(environ, git, _input_times(pf, plans))
    created = created_at(when)
    dirty = git.dirty_warning() if git else None
    layers: list[Descriptor] = []
    files: list[FileEntry] = []
    reused = 0
    for p in plans:
        stored = store_layer(store, cache, p, epoch)
        layers.append(stored.descriptor)
        files += stored.files
        reused += stored.reused

    source = f"run {from_run.link.id}" if from_run else None
    extra_layers, history = store_history(store, pf, curves, source)
    model_files = [f for f in files if f.path.startswith("models/")]
    model_file = next((f.path for f in model_files if f.path.endswith(".onnx")), None)
    record = Record(
        name=pf.name,
        version=version,
        created=created,
        files=tuple(sorted(files, key=lambda f: f.path)),
        datasets=datasets,
        metrics=metrics,
        params=dict(from_run.params) if from_run else dict(pf.params),
        git=git.recorded() if git else None,
        lock=lock.summary(f"code/{_rel(pf.dependencies.lockfile, pf.root)}"),
        build=build_environment(),
        security=security,
        tests=TestPlan(
            cases=f"code/{_rel(pf.tests.cases, pf.root)}" if pf.tests.cases else None,
            gates=tuple(str(g) for g in pf.tests.gates),
            latency_requests=pf.tests.latency_requests,
            evaluate=pf.tests.evaluate,
            load=pf.tests.load,
        ),
        serving=ServingInfo(
            handler=pf.code.handler,
            model=model_file,
            port=pf.serving.port,
            python=pf.dependencies.python,
            format=pf.model.format,
        ),
        history=history,
        run=from_run.link if from_run else None,
        frameworks=checks,
    )
    record_bytes = record.to_bytes()
    record_desc = store.put_blob_bytes(record_bytes, mt.RECORD)
    config_bytes = canonical.dumps(
        model_config(
            name=pf.name,
            version=version,
            created=created,
            diff_ids=[d.digest for d in layers],
            fmt=pf.model.format,
            description=pf.description,
            authors=pf.authors,
            license=pf.license,
            revision=git.commit if git else None,
            source_url=git.remote if git else None,
            # model-spec: "links or references to datasets"; a published dataset's reference is one
            datasets_urls=[u for d in pf.datasets for u in (d.uri, d.ref) if u],
        )
    )
    config_desc = store.put_blob_bytes(config_bytes, mt.MODEL_CONFIG)
    annotations = {
        mt.ANN_RECORD: record_bytes.decode(),
        mt.ANN_VERSION: version,
        mt.ANN_CREATED: created,
        mt.ANN_TITLE: pf.name,
    }
    if git:
        annotations[mt.ANN_REVISION] = git.commit
    manifest = Manifest(
        config=config_desc,
        layers=(*layers, *extra_layers, record_desc),
        artifact_type=mt.MODEL_ARTIFACT,
        annotations=annotations,
    )
    tag = f"{pf.name}:{version}"
    desc = store.put_document(manifest, tag=tag)
    return BundleResult(
        name=pf.name,
        version=version,
        tag=tag,
        manifest=desc,
        config=config_desc,
        layers=tuple(layers),
        record=record,
        lock=lock,
        reused_layers=reused,
        created_from=created_from,
        warnings=(dirty,) if dirty else (),
    )


def _rel(path: Path | None, root: Path) -> str:
    assert path is not None
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
