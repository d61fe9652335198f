"""Statistics of a dataset's files where the format allows: rows and columns, and the class distribution
of a label column. CSV, TSV and JSON Lines with the standard library; Parquet with pyarrow (the `parquet`
extra), and a note saying so when it is not installed. A file of another format has no statistics.

Every file is streamed once, in constant memory apart from the class counts (one entry per distinct label).
A CSV or TSV without `--label` is counted from the bytes the hasher already reads (`RowCounter`: newlines
counted in C, no second pass); it falls back to the csv module when a byte could make the two disagree.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modelpack.errors import InputError

TABULAR = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
PARQUET_NOTE = "Parquet statistics need pyarrow: pip install 'modelpack-release[parquet]'"
MAX_CLASSES = 1000  # a label column with more distinct values is an id, not a class: counts are dropped


@dataclass(frozen=True)
class FileStats:
    """One file's statistics. `classes` is the label column's value -> count (empty without `--label`)."""

    path: str
    format: str
    rows: int
    columns: tuple[str, ...]
    classes: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "columns": list(self.columns),
        }
        if self.classes:
            out["classes"] = dict(sorted(self.classes.items()))
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FileStats:
        return cls(
            path=str(obj["path"]),
            format=str(obj["format"]),
            rows=int(obj["rows"]),
            columns=tuple(str(c) for c in obj.get("columns") or ()),
            classes={str(k): int(v) for k, v in (obj.get("classes") or {}).items()},
        )


def format_of(path: str) -> str | None:
    return TABULAR.get(PurePosixPath(path).suffix.lower())


def file_stats(rel: str, path: Path, label: str | None) -> tuple[FileStats | None, str | None]:
    """(statistics, note): None for a file of no known tabular format; a note when they cannot be had."""
    fmt = format_of(rel)
    if fmt is None:
        return None, None
    try:
        if fmt == "parquet":
            return _parquet(rel, path, label)
        with path.open("r", encoding="utf-8", newline="") as f:
            if fmt == "jsonl":
                return _jsonl(rel, f, label), None
            return _delimited(rel, f, "\t" if fmt == "tsv" else ",", fmt, label), None
    except UnicodeDecodeError:
        return None, f"{rel}: not UTF-8 text, no statistics"
    except (csv.Error, ValueError) as e:
        return None, f"{rel}: not readable as {fmt} ({e}), no statistics"
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None


FIELD_LIMIT = csv.field_size_limit()  # a longer line may hold a field csv refuses: not counted here


class RowCounter:
    """The statistics `file_stats` would give a CSV or TSV file without a label, from its bytes fed in
    order (the chunks the hasher reads). `result()` is None when the fast count cannot be sure it agrees
    with the csv module: a quote (a field may hold a newline), a carriage return (another line ending), a
    NUL, a blank line (csv skips it) or a line past csv's field limit.
    Not UTF-8 gives the same note `file_stats` gives."""

    def __init__(self, rel: str) -> None:
        import numpy as np  # bytes.count is ~1 GB/s here; numpy finds the newlines 3x faster

        self._np = np
        self.rel = rel
        self.format = format_of(rel) or "csv"
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._seen = 0  # bytes fed so far
        self._last_nl = -1  # absolute offset of the last newline seen
        self._newlines = 0
        self._header: bytes | None = None
        self._head = bytearray()  # the header's bytes before its newline arrives
        self._unsure = False
        self._not_utf8 = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._unsure or self._not_utf8 or not chunk:
            self._seen += len(chunk)
            return
        data = _whole(chunk)
        if not data.isascii():
            try:
                self._decoder.decode(data)
            except UnicodeDecodeError:
                self._not_utf8 = True
        if data.find(b'"') >= 0 or data.find(b"\r") >= 0 or data.find(b"\0") >= 0:
            self._unsure = True
        np = self._np
        at = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        if len(at):
            first = int(at[0]) + self._seen
            if self._header is None:
                self._header = bytes(self._head + data[: int(at[0])])
            gaps = np.diff(at)
            if (
                first - self._last_nl == 1  # a blank line (or an empty header)
                or first - self._last_nl > FIELD_LIMIT
                or (len(gaps) and (int(gaps.min()) == 1 or int(gaps.max()) > FIELD_LIMIT))
            ):
                self._unsure = True
            self._last_nl = int(at[-1]) + self._seen
            self._newlines += len(at)
        elif self._header is None:
            self._head += data  # the header goes on past this chunk (bounded: FIELD_LIMIT below)
        self._seen += len(data)
        if self._seen - self._last_nl > FIELD_LIMIT:
            self._unsure = True

    def result(self) -> tuple[FileStats | None, str | None] | None:
        """(statistics, note) as `file_stats` gives them, or None: ask `file_stats`."""
        if self._unsure:  # the decoder stopped being fed then: only csv can say what the file is
            return None
        if not self._not_utf8:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self._not_utf8 = True
        if self._not_utf8:
            return None, f"{self.rel}: not UTF-8 text, no statistics"
        if self._seen == 0:
            return FileStats(self.rel, self.format, 0, ()), None
        if self._header is None:  # one line, no newline: the header alone
            return None
        header = next(csv.reader([self._header.decode()], delimiter="\t" if self.format == "tsv" else ","))
        tail = self._seen - 1 - self._last_nl  # bytes after the last newline: a last line without one
        rows = self._newlines - 1 + (1 if tail else 0)
        return FileStats(self.rel, self.format, rows, tuple(header)), None


def _whole(chunk: bytes | bytearray | memoryview) -> bytes | bytearray:
    """The chunk as an object bytes methods work on, without a copy when a view covers its whole buffer
    (the hasher's ring buffers, store/sourced.py)."""
    if isinstance(chunk, memoryview):
        obj = chunk.obj
        if isinstance(obj, bytes | bytearray) and chunk.nbytes == len(obj) and chunk.contiguous:
            return obj
        return chunk.tobytes()
    return chunk


def counts_fast(rel: str, label: str | None) -> bool:
    """Whether `RowCounter` can give this file's statistics (it counts rows; a label needs parsing)."""
    return label is None and format_of(rel) in ("csv", "tsv")


def class_totals(stats: Iterable[FileStats]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for s in stats:
        total.update(s.classes)
    return dict(sorted(total.items()))


def label_note(label: str | None, stats: Sequence[FileStats]) -> str | None:
    """A `--label` no tabular file has is a typo: say so rather than record an empty distribution."""
    if label is None or not stats or any(label in s.columns for s in stats):
        return None
    return f"--label {label!r}: no tabular file has that column"


def _delimited(rel: str, f: io.TextIOBase, delimiter: str, fmt: str, label: str | None) -> FileStats:
    reader = csv.reader(f, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return FileStats(rel, fmt, 0, ())
    index = header.index(label) if label is not None and label in header else None
    counts: Counter[str] = Counter()
    rows = 0
    for row in reader:
        if not row:
            continue  # a blank line is not a row (csv yields [] for it)
        rows += 1
        if index is not None and index < len(row):
            counts[row[index]] += 1
    return FileStats(rel, fmt, rows, tuple(header), _bounded(counts))


def _jsonl(rel: str, f: io.TextIOBase, label: str | None) -> FileStats:
    columns: dict[str, None] = {}
    counts: Counter[str] = Counter()
    rows = 0
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {n}: {e.msg}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {n} is not an object")
        rows += 1
        columns.update(dict.fromkeys(obj))
        if label is not None and label in obj:
            counts[_label_text(obj[label])] += 1
    return FileStats(rel, "jsonl", rows, tuple(columns), _bounded(counts))


def _parquet(rel: str, path: Path, label: str | None) -> tuple[FileStats | None, str | None]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return None, f"{rel}: {PARQUET_NOTE}"
    try:
        meta = pq.ParquetFile(path)
        names = tuple(str(n) for n in meta.schema_arrow.names)
        counts: Counter[str] = Counter()
        if label is not None and label in names:
            column = pq.read_table(path, columns=[label]).column(0)
            counts.update(_label_text(v) for v in column.to_pylist())
        return FileStats(rel, "parquet", int(meta.metadata.num_rows), names, _bounded(counts)), None
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        return None, f"{rel}: not readable as parquet ({type(e).__name__}), no statistics"


def _label_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _bounded(counts: Counter[str]) -> dict[str, int]:
    return {} if len(counts) > MAX_CLASSES else dict(sorted(counts.items()))
