"""Which files go in which layer of the bundle. Pure: paths and sizes in, layer plans out.

The bundle's tar entries sit under fixed top-level folders (`models/`, `code/`, `docs/`, `datasets/`) so
the same blobs are the serving image's layers and an unpacked bundle has the image's tree. Large weight
files get a layer each (parallel upload, dedupe across versions: retraining one file re-uploads one
layer); small files of a kind share one layer, since per-layer overhead would dominate them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelpack.oci import mediatypes as mt
from modelpack.oci.tar import TarEntry

LARGE_FILE = 16 * 1024 * 1024

WEIGHT_SUFFIXES = frozenset(
    {
        ".onnx", ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".pkl", ".pickle",
        ".joblib", ".h5", ".hdf5", ".keras", ".npz", ".npy", ".msgpack", ".tflite", ".pb", ".model",
        ".params", ".mlmodel", ".ot", ".data", ".weights",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SourceFile:
    path: Path  # on disk
    arcname: str  # in the bundle, e.g. "models/model.onnx"
    size: int


@dataclass(frozen=True)
class LayerPlan:
    media_type: str
    entries: tuple[TarEntry, ...]
    filepath: str  # the org.cncf.model.filepath annotation: the file, or the folder the layer holds

    @property
    def files(self) -> tuple[TarEntry, ...]:
        return tuple(e for e in self.entries if e.kind == "file")


def is_weight(arcname: str) -> bool:
    return PurePosixPath(arcname).suffix.lower() in WEIGHT_SUFFIXES


def plan_layers(
    model: Sequence[TarEntry],
    code: Sequence[TarEntry] = (),
    docs: Sequence[TarEntry] = (),
    datasets: Sequence[TarEntry] = (),
    large: int = LARGE_FILE,
) -> list[LayerPlan]:
    """Weights (one layer per large file, small ones grouped), weight configs, code, docs, datasets.

    Entries are file entries already placed under their top-level folder; directories are implied by
    the paths and added to each layer so every layer unpacks on its own.
    """
    weights = [e for e in model if e.kind == "file" and is_weight(e.arcname)]
    configs = [e for e in model if e.kind == "file" and not is_weight(e.arcname)]
    plans: list[LayerPlan] = []
    small: list[TarEntry] = []
    for e in sorted(weights, key=lambda x: x.arcname):
        if e.size >= large:
            plans.append(_layer(mt.MODEL_WEIGHT_TAR, [e], e.arcname))
        else:
            small.append(e)
    if small:
        plans.append(_layer(mt.MODEL_WEIGHT_TAR, small, _common_folder(small)))
    for media_type, group in (
        (mt.MODEL_WEIGHT_CONFIG_TAR, configs),
        (mt.MODEL_CODE_TAR, [e for e in code if e.kind == "file"]),
        (mt.MODEL_DOC_TAR, [e for e in docs if e.kind == "file"]),
        (mt.MODEL_DATASET_TAR, [e for e in datasets if e.kind == "file"]),
    ):
        if group:
            plans.append(_layer(media_type, group, _common_folder(group)))
    return plans


def group_layer(media_type: str, files: Sequence[TarEntry]) -> LayerPlan:
    """One layer of `files` (with their parent folders), annotated with the file or their common folder."""
    return _layer(media_type, files, _common_folder(files))


def _layer(media_type: str, files: Sequence[TarEntry], filepath: str) -> LayerPlan:
    dirs: set[str] = set()
    for e in files:
        parent = PurePosixPath(e.arcname).parent
        while str(parent) not in (".", "/"):
            dirs.add(str(parent))
            parent = parent.parent
    entries = [TarEntry.directory(d) for d in sorted(dirs)] + sorted(files, key=lambda x: x.arcname)
    return LayerPlan(media_type=media_type, entries=tuple(entries), filepath=filepath)


def _common_folder(files: Sequence[TarEntry]) -> str:
    if len(files) == 1:
        return files[0].arcname
    parts = [PurePosixPath(e.arcname).parent.parts for e in files]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common) + "/" if common else "./"
