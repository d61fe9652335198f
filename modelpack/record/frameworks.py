"""A framework version check the build made: what the model was made with against what the lock installs
(bundle/frameworks.py reads and decides; the record keeps every check, allowed mismatches included).

An opset check (`runtime` set) compares differently: `package` is the ONNX domain ("ai.onnx",
"ai.onnx.ml"), `found` the opset the model imports, `runtime` the locked onnxruntime ("onnxruntime
1.20.1") and `locked` the highest opset that release runs, None when the build could not tell (a release
newer than the compatibility table it knows): unchecked, never guessed."""

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
    runtime: str | None = None  # an opset check: the locked runtime that runs the model

    @property
    def checked(self) -> bool:
        return self.locked is not None

    @property
    def matches(self) -> bool:
        if self.runtime is not None:  # an opset: any up to the highest the runtime runs
            return self.locked is not None and int(self.found) <= int(self.locked)
        return self.locked == self.found

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"package": self.package, "found": self.found, "source": self.source,
                               "locked": self.locked, "allowed": self.allowed}  # fmt: skip
        if self.runtime is not None:
            out["runtime"] = self.runtime
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> VersionCheck:
        locked, runtime = obj.get("locked"), obj.get("runtime")
        return cls(str(obj["package"]), str(obj["found"]), str(obj["source"]),
                   None if locked is None else str(locked), bool(obj.get("allowed", False)),
                   None if runtime is None else str(runtime))  # fmt: skip
