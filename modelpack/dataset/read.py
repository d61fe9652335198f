"""Reading a dataset artifact back: its summary (one manifest GET), its full record (one bounded blob),
which of its layers hold the files a glob selects, and a check of extracted files against the record."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpack.errors import ContentError, DigestMismatchError, InputError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.target import Target
from modelpack.oci.untar import vcs_path
from modelpack.record.dataset import DatasetRecord

MAX_RECORD_BYTES = 64 << 20  # a record lists every file: a million files fit; a bigger blob is not ours


class NotADatasetError(ContentError):
    pass


@dataclass(frozen=True)
class DatasetView:
    digest: str
    manifest: Manifest
    record: DatasetRecord  # the full record, or the annotation's summary (no per-file lists)
    full: bool

    @property
    def data_layers(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.manifest.layers if d.media_type == mt.MODEL_DATASET_TAR)


def load_dataset(target: Target, ref: str, *, where: str, full: bool = True) -> DatasetView:
    raw = target.get_manifest(ref)
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Manifest) or doc.artifact_type != mt.DATASET_ARTIFACT:
        kind = doc.artifact_type if isinstance(doc, Manifest) else "an index"
        raise NotADatasetError(
            f"{where} is not a modelpack dataset (it is {kind or 'an image or a model'})",
            hint="push one with `modelpack dataset push PATH REG/REPO:VERSION`",
        )
    if not full:
        text = doc.annotations.get(mt.ANN_DATASET)
        if text is None:
            raise NotADatasetError(f"{where}: dataset manifest without its {mt.ANN_DATASET} annotation")
        return DatasetView(raw.digest, doc, DatasetRecord.from_json(canonical.loads(text)), full=False)
    records = [d for d in doc.layers if d.media_type == mt.DATASET_RECORD]
    if len(records) != 1 or records[0].size > MAX_RECORD_BYTES:
        raise NotADatasetError(f"{where}: a dataset manifest needs one record layer of at most 64 MiB")
    with target.read_blob(records[0]) as chunks:
        data = b"".join(chunks)
    return DatasetView(raw.digest, doc, DatasetRecord.from_bytes(data), full=True)


def selector(glob: str | None) -> Callable[[str], bool]:
    """`--filter GLOB` on paths inside the dataset (`*` crosses folders: `train/*` is all of train)."""
    if not glob:
        return lambda _path: True
    return lambda path: fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], glob)


def layers_for(view: DatasetView, paths: Sequence[str]) -> tuple[Descriptor, ...]:
    """The data layers that hold `paths`, from the layout artifact.py writes: a layer annotated with a
    file holds that file; one annotated with a folder (or `./`) holds the rest of that folder."""
    own = {d.annotations.get(mt.ANN_FILEPATH): d for d in view.data_layers}
    groups = [d for d in view.data_layers if (d.annotations.get(mt.ANN_FILEPATH) or "").endswith("/")]
    wanted: dict[str, Descriptor] = {}
    for path in paths:
        if path in own:
            wanted[own[path].digest] = own[path]
            continue
        for d in groups:
            folder = d.annotations.get(mt.ANN_FILEPATH, "")
            if folder == "./" or path.startswith(folder):
                wanted[d.digest] = d
    return tuple(d for d in view.data_layers if d.digest in wanted)


def refuse_vcs_paths(record: DatasetRecord, where: str) -> None:
    """A record that lists version-control metadata (`.git/config`: a command the next `git status` runs)
    is refused whole, before any layer is read; the extractor refuses such members too."""
    for f in record.files:
        why = vcs_path(f.path)
        if why:
            raise ContentError(f"{where} lists {f.path}: {why}; refused, nothing written")


def verify_files(
    record: DatasetRecord, staging: Path, paths: Sequence[str], wanted: Sequence[str] = ()
) -> None:
    """Each extracted file against the record's sha256, and every file of `wanted` (what the record lists
    for this pull) present: the layers were verified by digest already; this holds the record to them, so
    a record that lies about its files, or layers that omit some, are refused before anything moves."""
    from modelpack.bundle.datasets import sha256_file

    missing = sorted(set(wanted) - set(paths))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ContentError(
            f"the dataset's layers lack {missing[0]}{more}, which its record lists; nothing written",
            hint="the version is incomplete: push it again from the source",
        )
    known = {f.path: f for f in record.files}
    for path in paths:
        entry = known.get(path)
        if entry is None:
            raise ContentError(f"dataset layer holds {path}, which its record does not list; nothing written")
        got, size = sha256_file(staging / path)
        if (got, size) != (entry.sha256, entry.size):
            raise DigestMismatchError(
                f"{path} hashes to {got}, its record says {entry.sha256}; nothing written"
            )


def first_difference(published: DatasetRecord, local: Sequence[tuple[str, str]]) -> str:
    """The first file (listing order) where a local copy, as (path, sha256) pairs, and the record differ."""
    theirs = {f.path: f.sha256 for f in published.files}
    ours = dict(local)
    for path in sorted(set(theirs) | set(ours), key=lambda p: p.encode("utf-8")):
        if path not in ours:
            return f"{path} is missing locally"
        if path not in theirs:
            return f"{path} is not in the published dataset"
        if ours[path] != theirs[path]:
            return f"{path} differs ({ours[path][:19]} here, {theirs[path][:19]} published)"
    raise InputError("the local copy and the published dataset list the same files with the same hashes")
