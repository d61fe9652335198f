"""The training history (metrics.history) as a bundle layer: parsed before anything is stored, so a bad
file refuses the build naming its line and column; stored as normalized JSON; summarised for the record."""

from __future__ import annotations

from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.packfile import Packfile
from modelpack.record.curves import Curves, HistorySummary, directions
from modelpack.record.curves_read import load_history
from modelpack.store.layout import LayoutStore


def read_history(pf: Packfile) -> Curves | None:
    spec = pf.metrics_history
    if spec is None:
        return None
    curves = load_history(spec.path, display=spec.shown)
    for name, _ in spec.better:
        if name not in curves.columns:
            raise InputError(
                f"{pf.path.name}: metrics.history.better names {name!r}, which is not a column of "
                f"{spec.shown}", hint=f"its columns: {', '.join(curves.columns)}",
            )  # fmt: skip
    return curves


def store_history(
    store: LayoutStore, pf: Packfile, curves: Curves | None, source: str | None = None
) -> tuple[tuple[Descriptor, ...], HistorySummary | None]:
    """The history layer (none without a history) and the record's summary of it. `source` names curves
    that came from elsewhere than metrics.history (a run, for `build --run`)."""
    if curves is None or (pf.metrics_history is None and source is None):
        return (), None
    desc = store.put_blob_bytes(curves.to_bytes(), mt.METRICS_HISTORY)
    gates = [(g.metric, g.op) for g in pf.tests.gates]
    declared = dict(pf.metrics_history.better) if pf.metrics_history else {}
    better = directions(gates, declared)
    shown = source if source is not None else pf.relative(pf.metrics_history.path)  # type: ignore[union-attr]
    summary = curves.summary(shown, desc.digest, desc.size, better)
    return (desc,), summary
