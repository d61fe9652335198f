"""A run as an OCI artifact: the record, its curves, its system samples and its checkpoints' files.

    manifest  artifactType RUN_ARTIFACT, config the empty descriptor, annotation ANN_RUN = the summary
      layer   RUN_RECORD          the record (canonical JSON)
      layer   METRICS_HISTORY     per-step metrics, the normalized curves a bundle carries too
      layer   RUN_SYSTEM          sampled CPU, RSS and GPU (when there were samples)
      layers  RUN_CHECKPOINT_FILE one per checkpoint file, raw bytes (ANN_CHECKPOINT names the checkpoint,
                                  ANN_TITLE the file), so a build from the run pulls only the weights

Same run, same bytes: the digest of a finished run never changes, which is what makes it immutable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor, Manifest, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.record.curves import Curves
from modelpack.runs.record import RunRecord, Summary

EMPTY_CONFIG = Descriptor.of(mt.OCI_EMPTY, mt.EMPTY_JSON)
MAX_RECORD_BYTES = 16 << 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    """A layer to write: its descriptor and where its bytes are (in memory or a file)."""

    desc: Descriptor
    data: bytes | None = None
    path: Path | None = None

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        with self.path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


def run_tag(run_id: str) -> str:
    return f"run-{run_id}"


def run_manifest(
    record: RunRecord,
    curves: Curves | None,
    system: bytes | None,
    checkpoint_files: Sequence[tuple[str, str, Path, str, int]] = (),
) -> tuple[Manifest, list[Blob]]:
    """The manifest and its blobs. `checkpoint_files`: (checkpoint name, path in it, file, digest, size)."""
    blobs = [Blob(EMPTY_CONFIG, mt.EMPTY_JSON)]
    data = record.to_bytes()
    layers = [Descriptor.of(mt.RUN_RECORD, data)]
    blobs.append(Blob(layers[0], data))
    if curves is not None and curves.rows:
        c = curves.to_bytes()
        layers.append(Descriptor.of(mt.METRICS_HISTORY, c))
        blobs.append(Blob(layers[-1], c))
    if system:
        layers.append(Descriptor.of(mt.RUN_SYSTEM, system))
        blobs.append(Blob(layers[-1], system))
    for name, rel, path, digest, size in checkpoint_files:
        desc = Descriptor(
            mt.RUN_CHECKPOINT_FILE, digest, size, annotations={mt.ANN_CHECKPOINT: name, mt.ANN_TITLE: rel}
        )
        layers.append(desc)
        blobs.append(Blob(desc, path=path))
    manifest = Manifest(
        config=EMPTY_CONFIG,
        layers=tuple(layers),
        artifact_type=mt.RUN_ARTIFACT,
        annotations={mt.ANN_RUN: summary_annotation(record.summary()), mt.ANN_CREATED: record.started},
    )
    return manifest, blobs


def summary_annotation(summary: Summary) -> str:
    return canonical.dumps(summary.to_json()).decode()


def summary_obj(desc: Descriptor) -> dict[str, Any] | None:
    """The summary annotation of a run's descriptor, as JSON; None when it is not a run's."""
    text = (desc.annotations or {}).get(mt.ANN_RUN)
    if text is None:
        return None
    try:
        obj = canonical.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def summary_of(desc: Descriptor) -> Summary | None:
    """The summary a run's descriptor (in a listing) or manifest carries; None when it is not a run."""
    obj = summary_obj(desc)
    if obj is None:
        return None
    try:
        return Summary.from_json(obj, digest=desc.digest)
    except ContentError:
        return None


def write_blobs(target: Target, blobs: Sequence[Blob]) -> None:
    for blob in blobs:
        if not target.has_blob(blob.desc.digest):
            target.write_blob(blob.desc, blob.chunks())


def put(target: Target, manifest: Manifest, ref: str) -> str:
    raw = manifest.to_bytes()
    return target.put_manifest(ref, RawManifest(raw, manifest.media_type, manifest.digest))


@dataclass(frozen=True)
class RunView:
    """A run read back: its manifest, record, and where its other layers are."""

    digest: str
    manifest: Manifest
    record: RunRecord

    def layer(self, media_type: str) -> Descriptor | None:
        return next((d for d in self.manifest.layers if d.media_type == media_type), None)

    def checkpoint_layers(self, name: str) -> list[Descriptor]:
        return [
            d
            for d in self.manifest.layers
            if d.media_type == mt.RUN_CHECKPOINT_FILE and (d.annotations or {}).get(mt.ANN_CHECKPOINT) == name
        ]


def manifest_of(raw: RawManifest, where: str) -> Manifest:
    if len(raw.raw) > MAX_MANIFEST_BYTES:
        raise ContentError(f"{where}: manifest over {MAX_MANIFEST_BYTES} bytes")
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Manifest) or doc.artifact_type != mt.RUN_ARTIFACT:
        raise ContentError(f"{where} is not a modelpack run")
    return doc


def load_run(target: Target, ref: str, where: str) -> RunView:
    raw = target.get_manifest(ref)
    manifest = manifest_of(raw, where)
    layer = next((d for d in manifest.layers if d.media_type == mt.RUN_RECORD), None)
    if layer is None or layer.size > MAX_RECORD_BYTES:
        raise ContentError(f"{where}: the run has no record layer (or one over {MAX_RECORD_BYTES} bytes)")
    return RunView(raw.digest, manifest, RunRecord.from_bytes(read_small(target, layer)))


def read_small(target: Target, desc: Descriptor, limit: int = MAX_RECORD_BYTES) -> bytes:
    if desc.size > limit:
        raise ContentError(f"blob {desc.digest} is {desc.size} bytes, over {limit}")
    with target.read_blob(desc) as chunks:
        return b"".join(chunks)


def read_curves(target: Target, view: RunView) -> Curves | None:
    desc = view.layer(mt.METRICS_HISTORY)
    if desc is None:
        return None
    return Curves.from_bytes(read_small(target, desc, 64 << 20), where=f"run {view.record.id} curves")


def read_system(target: Target, view: RunView) -> Mapping[str, object] | None:
    desc = view.layer(mt.RUN_SYSTEM)
    if desc is None:
        return None
    obj = canonical.loads(read_small(target, desc))
    return obj if isinstance(obj, dict) else None
