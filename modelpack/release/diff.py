"""What changed between two releases, from their records alone: a pure function, no I/O.

Answers "what changed between v4 and v5?": metric deltas with their direction, datasets whose hash
changed (retrained on other data), model and code files whose hash changed, packages added, removed or
re-pinned, params and the git commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpack.record.record import Record, flatten

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
UP, DOWN, SAME = "up", "down", "same"
HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True)
class MetricDelta:
    name: str
    old: float | None
    new: float | None
    old_dataset: str | None = None
    new_dataset: str | None = None
    better: str | None = None  # "higher" or "lower": from the gates, or as the caller said; None: unknown
    old_dataset_version: str | None = None  # the evaluation dataset's digest (or content hash), if known
    new_dataset_version: str | None = None

    @property
    def regressed(self) -> bool:
        """Moved the wrong way (only known where `better` is, and only between comparable numbers)."""
        d = self.delta
        if d is None or self.better is None or d == 0 or not self.comparable:
            return False
        return d < 0 if self.better == HIGHER else d > 0

    @property
    def improved(self) -> bool:
        d = self.delta
        return d is not None and d != 0 and self.better is not None and self.comparable and not self.regressed

    @property
    def comparable(self) -> bool:
        """Both sides measured on the same evaluation dataset (name, and version where both are known):
        otherwise the delta compares unlike things and says nothing about the model."""
        return not self.dataset_changed

    @property
    def status(self) -> str:
        if self.old is None:
            return ADDED
        if self.new is None:
            return REMOVED
        return CHANGED if self.old != self.new else SAME

    @property
    def delta(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        return self.new - self.old

    @property
    def relative(self) -> float | None:
        """delta / |old|; None when old is 0 (no meaningful ratio) or one side is missing."""
        d = self.delta
        if d is None or self.old == 0 or self.old is None:
            return None
        return d / abs(self.old)

    @property
    def direction(self) -> str | None:
        d = self.delta
        if d is None:
            return None
        if d == 0:
            return SAME
        return UP if d > 0 else DOWN

    @property
    def dataset_changed(self) -> bool:
        """Both sides measured, but on another dataset, or another version of it (V2 and V3 of one name)."""
        if self.old is None or self.new is None:
            return False
        if self.old_dataset != self.new_dataset:
            return True
        o, n = self.old_dataset_version, self.new_dataset_version
        return o is not None and n is not None and o != n

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "oldDataset": self.old_dataset,
            "newDataset": self.new_dataset,
            "status": self.status,
            "delta": self.delta,
            "relative": self.relative,
            "direction": self.direction,
            "better": self.better,
            "regressed": self.regressed,
            "improved": self.improved,
            "datasetChanged": self.dataset_changed,
            "comparable": self.comparable,
            "oldDatasetVersion": self.old_dataset_version,
            "newDatasetVersion": self.new_dataset_version,
        }


@dataclass(frozen=True)
class Change:
    """One keyed value that differs: a dataset hash, a file hash, a package version, a param."""

    key: str
    old: Any
    new: Any

    @property
    def status(self) -> str:
        if self.old is None:
            return ADDED
        if self.new is None:
            return REMOVED
        return CHANGED

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class RecordDiff:
    old: Record
    new: Record
    metrics: tuple[MetricDelta, ...]  # every metric of either side, the unchanged ones too
    datasets: tuple[Change, ...]  # by dataset name: sha256
    files: tuple[Change, ...]  # by bundle path (models/..., code/...): sha256
    packages: tuple[Change, ...]  # by normalized name: pinned version
    params: tuple[Change, ...]  # by dotted key
    git: Change | None  # the commit, when it differs
    python: Change | None = None  # the lockfile's Python version, when it differs

    @property
    def regressions(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics if m.regressed)

    @property
    def version_changed(self) -> bool:
        return (self.old.name, self.old.version) != (self.new.name, self.new.version)

    @property
    def model_files(self) -> tuple[Change, ...]:
        return tuple(c for c in self.files if c.key.startswith("models/"))

    @property
    def unchanged(self) -> bool:
        return (
            all(m.status == SAME for m in self.metrics)
            and not (self.datasets or self.files or self.packages or self.params)
            and self.git is None
            and self.python is None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "old": {"name": self.old.name, "version": self.old.version},
            "new": {"name": self.new.name, "version": self.new.version},
            "unchanged": self.unchanged,
            "versionChanged": self.version_changed,
            "regressions": list(self.regressions),
            "metrics": [m.to_json() for m in self.metrics],
            "datasets": [c.to_json() for c in self.datasets],
            "files": [c.to_json() for c in self.files],
            "packages": [c.to_json() for c in self.packages],
            "params": [c.to_json() for c in self.params],
            "git": self.git.to_json() if self.git else None,
            "python": self.python.to_json() if self.python else None,
        }


def gate_directions(record: Record) -> dict[str, str]:
    """Which way is better for each metric a gate names (`accuracy >= 0.9` says higher), and for each
    metric named like a training-history column whose way the packfile's `metrics.history.better` gave."""
    out: dict[str, str] = {}
    for column in record.history.columns if record.history else ():
        if column.better is not None:
            out[column.name] = column.better
    for text in record.tests.gates if record.tests else ():
        metric, _, rest = str(text).partition(" ")
        op = rest.split(" ", 1)[0]
        if op in (">=", ">"):
            out[metric] = HIGHER
        elif op in ("<=", "<"):
            out[metric] = LOWER
    return out


def diff_records(old: Record, new: Record, better: Mapping[str, str] | None = None) -> RecordDiff:
    """`better`: metric -> "higher" or "lower", over what the newer release's gates say."""
    directions = {**gate_directions(old), **gate_directions(new), **(better or {})}
    metrics = tuple(
        MetricDelta(
            name,
            old.metrics[name].value if name in old.metrics else None,
            new.metrics[name].value if name in new.metrics else None,
            old.metrics[name].dataset if name in old.metrics else None,
            new.metrics[name].dataset if name in new.metrics else None,
            directions.get(name),
            dataset_version(old, old.metrics[name].dataset if name in old.metrics else None),
            dataset_version(new, new.metrics[name].dataset if name in new.metrics else None),
        )
        for name in sorted({*old.metrics, *new.metrics})
    )
    old_lock, new_lock = old.lock, new.lock
    python = _change("python", old_lock.python if old_lock else None, new_lock.python if new_lock else None)
    return RecordDiff(
        old=old,
        new=new,
        metrics=metrics,
        datasets=_changes({d.name: d.sha256 for d in old.datasets}, {d.name: d.sha256 for d in new.datasets}),
        files=_changes({f.path: f.sha256 for f in old.files}, {f.path: f.sha256 for f in new.files}),
        packages=_changes(_packages(old), _packages(new)),
        params=_changes(flatten(old.params), flatten(new.params)),
        git=_change("commit", _commit(old), _commit(new)),
        python=python,
    )



def dataset_version(record: Record, name: str | None) -> str | None:
    """The version of the dataset `name` a record used: its artifact digest when published, else the hash
    of its files; None when the record lists no such dataset."""
    entry = next((d for d in record.datasets if d.name == name), None) if name else None
    return (entry.digest or entry.sha256) if entry else None


def short_version(version: str | None) -> str:
    """A dataset version as people read it beside a name: the first 12 hex digits."""
    return version.split(":", 1)[-1][:12] if version else ""


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Change, ...]:
    found = (_change(k, old.get(k), new.get(k)) for k in sorted({*old, *new}))
    return tuple(c for c in found if c is not None)


def _change(key: str, old: Any, new: Any) -> Change | None:
    return None if old == new else Change(key, old, new)


def _packages(record: Record) -> dict[str, str]:
    """What the image installs: the serving runtime's packages, the lock winning where both pin one."""
    return {**record.runtime, **(record.lock.packages if record.lock else {})}


def _commit(record: Record) -> str | None:
    return record.git.commit if record.git else None
