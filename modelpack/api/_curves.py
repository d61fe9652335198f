"""Training curves of a release: the summary its record carries and the points of its history layer.

For the web portal's version page (one release) and compare (one call per release, overlaid). A release
built without `metrics.history` has no curves: an answer (`history` None), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import mediatypes as mt
from modelpack.record.curves import MAX_LAYER_BYTES, Curves, HistorySummary
from modelpack.release.view import load_release
from modelpack.targets import Targets


@dataclass(frozen=True)
class CurvesResult:
    reference: str
    digest: str  # of what the reference names
    name: str
    version: str
    history: HistorySummary | None  # from the record; None: built without a history
    curves: Curves | None  # the layer's points; None with history None, or when not asked for

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "name": self.name,
            "version": self.version,
            "history": self.history.to_json() if self.history is not None else None,
            "curves": self.curves.to_json() if self.curves is not None else None,
        }


def training_curves(
    targets: Targets, reference: str, *, local: bool = False, points: bool = True
) -> CurvesResult:
    """The release's training curves: its record's summary and, with `points`, the history layer
    (one blob GET, bounded and digest-checked); `points=False` reads manifests only."""
    where = targets.open(reference, local=local)
    ref = where.need_ref("read")
    view = load_release(where.target, ref, layers=points, where=where.display)
    rec = view.record
    curves = None
    if rec.history is not None and points:
        assert view.bundle_manifest is not None  # load_release reads it when layers are asked for
        layer = next(
            (d for d in view.bundle_manifest.layers
             if d.media_type == mt.METRICS_HISTORY and d.digest == rec.history.digest),
            None,
        )  # fmt: skip
        label = f"{where.display}: history layer {rec.history.digest[:19]}"
        if layer is None:
            raise ContentError(f"{label} named by the record is not in the bundle")
        if layer.size > MAX_LAYER_BYTES:
            raise ContentError(f"{label} is {layer.size:,} bytes, more than {MAX_LAYER_BYTES >> 20} MiB")
        with where.target.read_blob(layer) as chunks:
            curves = Curves.from_bytes(b"".join(chunks), where=label)
    return CurvesResult(where.display, view.digest, rec.name, rec.version, rec.history, curves)
