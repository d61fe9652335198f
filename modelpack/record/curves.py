"""Training curves: the history training writes, normalized into a small layer, and its summary.

`metrics.history` in modelpack.yaml names a CSV or JSONL file (curves_read.py parses it). The bundle
carries it as one layer of its own media type (`mediatypes.METRICS_HISTORY`) holding canonical JSON
`{"x": "step"|"epoch", "columns": [...], "rows": [[x, v1, v2, ...], ...]}`, a value null where training
logged nothing for that column at that x; same file, same bytes, same digest. The record carries a
`HistorySummary` (row count, and per column first, last, min, max and the best when its direction is
known), so `inspect` shows the curves' outcome from the manifest alone and only a plot fetches the layer.

Which way is better is never guessed from a name: it comes from `metrics.history.better` or from a gate
on a column of the same name (`loss <= 0.2` says lower); otherwise `best` is absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import canonical

X_NAMES = ("step", "epoch")  # the x column, in order of preference when a file has both
HIGHER, LOWER = "higher", "lower"
MAX_LAYER_BYTES = 64 << 20  # what a reader accepts: a 16 MiB CSV normalizes to a few times that at most

Value = int | float | None
Point = tuple[float, float]  # (x, value)


@dataclass(frozen=True)
class Curves:
    """The normalized history: rows sorted by x (strictly increasing), one value or None per column."""

    x: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]  # each [x, *one value per column]

    def to_json(self) -> dict[str, Any]:
        return {"x": self.x, "columns": list(self.columns), "rows": [list(r) for r in self.rows]}

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> Curves:
        """Read a history layer back; anything but the shape this module writes is a ContentError."""
        try:
            obj = canonical.loads(data)
            x, columns, rows = obj["x"], obj["columns"], obj["rows"]
            if x not in X_NAMES or not all(isinstance(c, str) for c in columns) or not isinstance(rows, list):
                raise TypeError("x, columns or rows")
            width = 1 + len(columns)
            out = tuple(tuple(_value(v) for v in row) for row in rows)
            if any(len(r) != width or r[0] is None for r in out):
                raise TypeError(f"a row is not {width} values with x first")
        except (ValueError, KeyError, TypeError) as e:
            raise ContentError(f"{where}: not a modelpack metrics history: {e}") from None
        return cls(str(x), tuple(columns), out)

    def summary(self, path: str, digest: str, size: int, better: Mapping[str, str]) -> HistorySummary:
        return HistorySummary(
            path=path,
            digest=digest,
            size=size,
            x=self.x,
            rows=len(self.rows),
            columns=tuple(
                _summarize(name, [(r[0], r[i + 1]) for r in self.rows], better.get(name))
                for i, name in enumerate(self.columns)
            ),
        )


def _value(v: Any) -> Value:
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    raise TypeError(f"{v!r} is not a number")


@dataclass(frozen=True)
class ColumnSummary:
    name: str
    count: int  # rows holding a value for this column
    first: Point | None
    last: Point | None
    min: Point | None
    max: Point | None
    better: str | None = None  # HIGHER, LOWER, or None: not known, so no best

    @property
    def best(self) -> Point | None:
        return {HIGHER: self.max, LOWER: self.min}.get(self.better or "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "count": self.count}
        for key in ("first", "last", "min", "max", "best"):
            point = getattr(self, key)
            out[key] = list(point) if point is not None else None
        out["better"] = self.better
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ColumnSummary:
        def point(key: str) -> Point | None:
            v = obj.get(key)
            return None if v is None else (v[0], float(v[1]))

        better = obj.get("better")
        if better not in (HIGHER, LOWER, None):
            raise ValueError(f"better is {better!r}")
        return cls(str(obj["name"]), int(obj["count"]), point("first"), point("last"), point("min"),
                   point("max"), better)  # fmt: skip


@dataclass(frozen=True)
class HistorySummary:
    """What the record says about the history layer: where it came from, which layer, and the outcome."""

    path: str  # the file as modelpack.yaml names it, relative to the project
    digest: str  # of the history layer in the bundle
    size: int
    x: str
    rows: int
    columns: tuple[ColumnSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "digest": self.digest,
            "size": self.size,
            "x": self.x,
            "rows": self.rows,
            "columns": [c.to_json() for c in self.columns],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> HistorySummary:
        return cls(
            path=str(obj["path"]),
            digest=str(obj["digest"]),
            size=int(obj["size"]),
            x=str(obj["x"]),
            rows=int(obj["rows"]),
            columns=tuple(ColumnSummary.from_json(c) for c in obj["columns"]),
        )


def _summarize(name: str, points: Sequence[tuple[Value, Value]], better: str | None) -> ColumnSummary:
    have = [(float(x), float(v)) for x, v in points if x is not None and v is not None]
    if not have:
        return ColumnSummary(name, 0, None, None, None, None, better)
    # The first x where the extreme is reached: a plateau's best is when training got there.
    low = min(have, key=lambda p: p[1])
    high = max(have, key=lambda p: p[1])
    ends = _plain(have[0]), _plain(have[-1])
    return ColumnSummary(name, len(have), *ends, _plain(low), _plain(high), better)


def _plain(point: Point) -> Point:
    """x back as an int when it is one (steps are), so the record reads as the file did."""
    x, v = point
    return (int(x) if x.is_integer() else x, v)


def directions(gates: Sequence[tuple[str, str]], declared: Mapping[str, str]) -> dict[str, str]:
    """Which way is better per column: gates `(metric, op)` say it (`>=` higher), `declared` wins."""
    out: dict[str, str] = {}
    for metric, op in gates:
        if op in (">=", ">"):
            out[metric] = HIGHER
        elif op in ("<=", "<"):
            out[metric] = LOWER
    return {**out, **declared}
