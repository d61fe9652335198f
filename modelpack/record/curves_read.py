"""Reading the history file training writes (CSV with a header, or JSONL: one JSON object a line) into
`Curves`. Every refusal is one line naming the file, the line and the column.

The x column is `step` (or `epoch` when there is no step). Every other column is a metric: each value a
finite number, or empty (CSV) / absent or null (JSONL) where training logged nothing. Loggers such as
Lightning's CSVLogger write the train and validation values of one step on separate rows; rows with the
same x are merged, and a column given two values at one x is refused (two runs in one file, usually).
x never goes back: a resumed run that repeats steps would draw one curve over another.

Bounded: 16 MiB, a million rows, 64 metric columns (the summary of each rides in the record, which is a
manifest annotation).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelpack.errors import InputError
from modelpack.record.curves import X_NAMES, Curves, Value
from modelpack.record.files import read_bounded
from modelpack.record.metrics import is_number

MAX_BYTES = 16 << 20
MAX_ROWS = 1_000_000
MAX_COLUMNS = 64
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_WHAT = "a CSV or JSONL training history"

# (line number, {column: value}) for each data row, in file order
_Rows = Iterator[tuple[int, dict[str, Value]]]


def load_history(path: Path, *, display: str | None = None) -> Curves:
    where = display or str(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{where}: a training history must be .csv or .jsonl", hint="convert it to CSV")
    data = read_bounded(path, where=where, limit=MAX_BYTES, what=_WHAT)
    try:
        text = data.decode("utf-8-sig")  # spreadsheets save CSV with a byte-order mark
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: not UTF-8 text (byte {e.start})") from None
    if kind == "csv":
        columns, rows = _csv(text, where)
    else:
        columns, rows = _jsonl(text, where)
    return _normalize(columns, rows, where)


def _csv(text: str, where: str) -> tuple[list[str], _Rows]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise InputError(f"{where}:1: not valid CSV: {e}") from None
    if not header or not any(h.strip() for h in header):
        raise InputError(f"{where}: is empty; expected a header line such as 'step,loss'")
    names = [h.strip() for h in header]
    for i, name in enumerate(names):
        if not name:
            raise InputError(f"{where}:1: column {i + 1} has no name")
        if name in names[:i]:
            raise InputError(f"{where}:1: column {name!r} is named twice")

    def rows() -> _Rows:
        line = 1
        try:
            for cells in reader:
                line = reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                if len(cells) != len(names):
                    raise InputError(
                        f"{where}:{line}: {len(cells)} values, but the header names {len(names)} columns"
                    )
                yield line, {n: _cell(c, where, line, n) for n, c in zip(names, cells, strict=True)}
        except csv.Error as e:
            raise InputError(f"{where}:{line + 1}: not valid CSV: {e}") from None

    return names, rows()


def _cell(text: str, where: str, line: int, column: str) -> Value:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}:{line}: column {column!r}: {_show(text)} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}:{line}: column {column!r}: {text} is not a finite number",
                         hint="leave the cell empty where there is no value")  # fmt: skip
    return int(value) if _integral(text) else value


def _integral(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _jsonl(text: str, where: str) -> tuple[list[str], _Rows]:
    lines = text.splitlines()
    names: dict[str, None] = {}  # every key, in order of first appearance
    parsed: list[tuple[int, dict[str, Value]]] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw, parse_constant=_no_constant, object_pairs_hook=_unique)
        except _Twice as e:
            raise InputError(f"{where}:{n}: column {e.key!r} is given twice on one line") from None
        except ValueError as e:
            raise InputError(f"{where}:{n}: not a JSON object: {getattr(e, 'msg', e)}") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where}:{n}: not a JSON object, but {type(obj).__name__}")
        row: dict[str, Value] = {}
        for key, value in obj.items():
            if not key.strip():
                raise InputError(f"{where}:{n}: a column has an empty name")
            if value is not None and not is_number(value):
                raise InputError(f"{where}:{n}: column {key!r}: {_show(value)} is not a number",
                                 hint="a history holds numbers only; put text elsewhere")  # fmt: skip
            row[key] = value
            names.setdefault(key)
        parsed.append((n, row))
        if len(parsed) > MAX_ROWS:
            break
    if not parsed:
        raise InputError(f"{where}: is empty; expected lines such as {{\"step\": 1, \"loss\": 0.5}}")
    return list(names), iter(parsed)


class _Twice(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON's last-wins for a repeated key would drop a value silently: refused instead."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Twice(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _normalize(names: list[str], rows: _Rows, where: str) -> Curves:
    x = next((n for n in X_NAMES if n in names), None)
    if x is None:
        raise InputError(f"{where}: no 'step' or 'epoch' column (columns: {_list(names)})",
                         hint="training curves need the step or epoch of each row")  # fmt: skip
    columns = [n for n in names if n != x]
    if not columns:
        raise InputError(f"{where}: no metric column beside {x!r}")
    if len(columns) > MAX_COLUMNS:
        raise InputError(f"{where}: {len(columns)} metric columns, more than {MAX_COLUMNS}",
                         hint="keep the curves worth plotting")  # fmt: skip
    out: list[list[Value]] = []
    lines: list[dict[str, int]] = []  # per merged row: column -> the line that set it
    count = 0
    for line, row in rows:
        count += 1
        if count > MAX_ROWS:
            raise InputError(f"{where}:{line}: more than {MAX_ROWS:,} rows", hint="log every Nth step")
        at = row.get(x)
        if at is None:
            raise InputError(f"{where}:{line}: column {x!r} is empty")
        if out and at < (prev := out[-1][0]):  # type: ignore[operator]
            raise InputError(f"{where}:{line}: {x} {at} comes after {x} {prev}; {x} may not go back",
                             hint="keep one run's rows (a resumed run repeats steps)")  # fmt: skip
        if not out or at != out[-1][0]:
            out.append([at, *([None] * len(columns))])
            lines.append({})
        merged, seen = out[-1], lines[-1]
        for i, name in enumerate(columns):
            value = row.get(name)
            if value is None:
                continue
            if merged[i + 1] is not None and merged[i + 1] != value:  # Lightning repeats epoch on both
                raise InputError(f"{where}:{line}: column {name!r} has a second value at {x} {at} "
                                 f"(first on line {seen[name]})", hint="keep one run's rows")  # fmt: skip
            merged[i + 1] = value
            seen[name] = line
    if not out:
        raise InputError(f"{where}: has a header but no rows")
    return Curves(x, tuple(columns), tuple(tuple(r) for r in out))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _list(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:8])
    return shown + (", ..." if len(names) > 8 else "") if names else "none"
