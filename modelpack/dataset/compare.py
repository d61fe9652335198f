"""`dataset diff` (files, rows, class shift between two versions) and `dataset used-by` (the model versions
whose records name a dataset, matched by the artifact's digest, or by its content hash)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpack.record.dataset import DatasetRecord
from modelpack.record.record import Record


@dataclass(frozen=True)
class FileChange:
    path: str
    size_a: int | None  # None: absent from A (added)
    size_b: int | None  # None: absent from B (removed)
    rows_a: int | None = None
    rows_b: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sizeA": self.size_a, "sizeB": self.size_b, "rowsA": self.rows_a,
                "rowsB": self.rows_b}  # fmt: skip


@dataclass(frozen=True)
class ClassShift:
    name: str
    count_a: int
    count_b: int
    share_a: float  # of the labelled rows of A, 0..1
    share_b: float

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "countA": self.count_a,
            "countB": self.count_b,
            "delta": self.count_b - self.count_a,
            "shareA": round(self.share_a, 6),
            "shareB": round(self.share_b, 6),
            "shareDelta": round(self.share_b - self.share_a, 6),
        }


@dataclass(frozen=True)
class DatasetDiff:
    added: tuple[FileChange, ...]
    removed: tuple[FileChange, ...]
    changed: tuple[FileChange, ...]
    rows_a: int | None
    rows_b: int | None
    classes: tuple[ClassShift, ...]

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_records(a: DatasetRecord, b: DatasetRecord) -> DatasetDiff:
    fa = {f.path: f for f in a.files}
    fb = {f.path: f for f in b.files}
    ra = {s.path: s.rows for s in a.stats}
    rb = {s.path: s.rows for s in b.stats}

    def change(path: str) -> FileChange:
        return FileChange(
            path,
            fa[path].size if path in fa else None,
            fb[path].size if path in fb else None,
            ra.get(path),
            rb.get(path),
        )

    order = sorted(set(fa) | set(fb), key=lambda p: p.encode("utf-8"))
    return DatasetDiff(
        added=tuple(change(p) for p in order if p not in fa),
        removed=tuple(change(p) for p in order if p not in fb),
        changed=tuple(change(p) for p in order if p in fa and p in fb and fa[p].sha256 != fb[p].sha256),
        rows_a=a.rows,
        rows_b=b.rows,
        classes=class_shift(a.classes, b.classes),
    )


def class_shift(a: Mapping[str, int], b: Mapping[str, int]) -> tuple[ClassShift, ...]:
    total_a, total_b = sum(a.values()), sum(b.values())
    return tuple(
        ClassShift(
            name,
            a.get(name, 0),
            b.get(name, 0),
            a.get(name, 0) / total_a if total_a else 0.0,
            b.get(name, 0) / total_b if total_b else 0.0,
        )
        for name in sorted(set(a) | set(b))
    )


@dataclass(frozen=True)
class Use:
    """One model version that recorded the dataset: as which entry, how it matched, what was measured."""

    repository: str
    tag: str
    digest: str  # the model release's
    entry: str  # the dataset's name in that model's record
    matched: str  # "digest" (the artifact itself) or "sha256" (a local copy with the same content)
    role: str  # "measured" when metrics name it, else "trained"
    metrics: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "dataset": self.entry,
            "matched": self.matched,
            "role": self.role,
            "metrics": dict(sorted(self.metrics.items())),
        }


def uses_in(
    record: Record, digest: str, sha256: str | None
) -> Sequence[tuple[str, str, str, dict[str, float]]]:
    """(entry name, matched, role, metrics measured on it) for each dataset entry of `record` that is the
    dataset: its digest is the artifact's, or (recorded from a local copy) its content hash is."""
    out = []
    for d in record.datasets:
        if d.digest == digest:
            matched = "digest"
        elif sha256 is not None and d.sha256 == sha256:
            matched = "sha256"
        else:
            continue
        metrics = {k: m.value for k, m in record.metrics.items() if m.dataset == d.name}
        out.append((d.name, matched, "measured" if metrics else "trained", metrics))
    return out
