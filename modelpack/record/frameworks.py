"""A framework version check the build made: what the model was made with against what the lock installs
(bundle/frameworks.py reads and decides; the record keeps every check, allowed mismatches included)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VersionCheck:
    package: str
    found: str  # the version the model was made with
    source: str  # where that came from: "models/model.pkl (pickled)" or "run <id>"
    locked: str | None  # what the lock installs
    allowed: bool = False  # a mismatch let through by --allow-version-mismatch

    @property
    def matches(self) -> bool:
        return self.locked == self.found

    def to_json(self) -> dict[str, Any]:
        return {"package": self.package, "found": self.found, "source": self.source, "locked": self.locked,
                "allowed": self.allowed}  # fmt: skip

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> VersionCheck:
        locked = obj.get("locked")
        return cls(str(obj["package"]), str(obj["found"]), str(obj["source"]),
                   None if locked is None else str(locked), bool(obj.get("allowed", False)))  # fmt: skip
