"""A release built from a run (`build --run`): the run's checkpoint is the weights, its record the facts.

The checkpoint's files come back from the run artifact into the project at the paths training wrote them
(so a CI job builds with no weights in git); a file already there with other bytes is refused, naming
both digests. Params, final metrics, curves and datasets come from the run: a dataset is recorded by the
digest the run read, whatever version is on disk at build time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from modelpack.bundle.build import FromRun
from modelpack.dataset.read import load_dataset
from modelpack.errors import ContentError, InputError, NotFoundError
from modelpack.oci import mediatypes as mt
from modelpack.oci.target import Target
from modelpack.packfile.schema import DatasetSpec
from modelpack.record.dataset import PublishedDataset
from modelpack.record.record import Metric, RunLink, flatten
from modelpack.runs.artifact import RunView, read_curves
from modelpack.runs.record import Checkpoint, DatasetUse
from modelpack.targets import Targets


def choose_checkpoint(view: RunView, name: str | None) -> Checkpoint:
    cps = view.record.checkpoints
    if not cps:
        raise InputError(
            f"run {view.record.id} recorded no checkpoint", hint="call run.checkpoint(path) in training"
        )
    if name is None:
        return cps[-1]
    found = [c for c in cps if c.name == name]
    if not found:
        raise InputError(f"run {view.record.id} has no checkpoint {name!r}",
                         hint=f"its checkpoints: {', '.join(c.name for c in cps)}")  # fmt: skip
    return found[-1]


def restore_checkpoint(target: Target, view: RunView, checkpoint: Checkpoint, root: Path) -> list[str]:
    """Writes the checkpoint's files under `root` (verified), leaving identical ones; the paths written."""
    layers = {(d.annotations or {}).get(mt.ANN_TITLE): d for d in view.checkpoint_layers(checkpoint.name)}
    written = []
    for f in checkpoint.files:
        rel = PurePosixPath(f.path)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ContentError(f"run {view.record.id}: checkpoint path {f.path!r} escapes the project")
        dest = root / Path(*rel.parts)
        if dest.is_symlink():
            raise InputError(f"{dest} is a symlink; the run's checkpoint is not written through it")
        if dest.is_file():
            have = _digest(dest)
            if have == f.digest:
                continue
            raise InputError(
                f"{f.path} on disk ({have[:19]}) is not run {view.record.id}'s checkpoint "
                f"{checkpoint.name!r} ({f.digest[:19]})",
                hint="remove it to build from the run, or build without --run",
            )
        desc = layers.get(f.path)
        if desc is None or desc.digest != f.digest:
            raise ContentError(
                f"run {view.record.id}: the checkpoint file {f.path} is not in the run artifact"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".modelpack-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, target.read_blob(desc) as chunks:  # verified at the end
                for chunk in chunks:
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(f.path)
    return written


def inputs(
    targets: Targets,
    target: Target,
    view: RunView,
    ref: str,
    checkpoint: Checkpoint,
    specs: Sequence[DatasetSpec],
) -> tuple[FromRun, tuple[DatasetSpec, ...]]:
    """What the build takes from the run, and the packfile's datasets the run did not read (the build
    resolves those as usual). A packfile dataset whose `ref:` names the same repository as one the run
    read becomes the run's version, by its digest."""
    record = view.record
    specs_left = list(specs)
    from_run: list[DatasetSpec] = []
    published: dict[str, PublishedDataset] = {}
    for use in record.datasets:
        repo = repository_of(use.ref)
        same = next((s for s in specs_left if s.ref and repository_of(s.ref) == repo), None)
        if same is not None:
            specs_left.remove(same)
        name = same.name if same is not None else repo.rsplit("/", 1)[-1]
        from_run.append(DatasetSpec(name, None, None, same.uri if same else None, False, use.ref))
        published[name] = _published(targets, use)
    link = RunLink(ref, record.id, view.digest, checkpoint.name)
    metrics = {k: Metric(v) for k, v in sorted(record.metrics.items())}
    params = {
        k: v
        for k, v in flatten(record.params).items()
        if isinstance(v, str | int | float | bool) or v is None
    }
    curves = read_curves(target, view)
    taken = FromRun(link, params, metrics, curves, tuple(from_run), published, dict(record.packages))
    return taken, tuple(specs_left)


def _published(targets: Targets, use: DatasetUse) -> PublishedDataset:
    """The dataset version the run read, by its digest: its size and file count from its manifest."""
    repo = repository_of(use.ref)
    try:
        place = targets.open(f"{repo}@{use.digest}")
        view = load_dataset(place.target, use.digest, where=f"{repo}@{use.digest}", full=False)
    except NotFoundError as e:
        raise InputError(f"the run read {use.ref} ({use.digest[:19]}), which is gone: {e.message}") from None
    return PublishedDataset(
        use.ref, use.digest, use.sha256 or view.record.sha256, view.record.size, view.record.count
    )


def repository_of(ref: str) -> str:
    """`HOST/REPO` of `HOST/REPO:TAG` or `HOST/REPO@DIGEST`."""
    head = ref.partition("@")[0]
    slash, colon = head.rfind("/"), head.rfind(":")
    return head[:colon] if colon > slash else head


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"
