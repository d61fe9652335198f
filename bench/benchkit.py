"""What the benchmarks share: the BENCH line every bench prints for `bench/all`, and the custom-handler
project template the image benchmarks build (image_bench.py, image_size_bench.py).

The BENCH contract (bench/README.md): given `--quick`, a bench runs a small size and prints, per measured
operation, one line

    BENCH {"operation": "...", "modelpack": 1.23, "limit": 2.0, "peer": 4.5, "ratio": 0.62}

`modelpack`, `limit` and `peer` are seconds unless `"unit"` says otherwise (`"B"`: bytes); `limit` and
`peer` are null when there is none; `ratio` is modelpack / limit (at most 1 meets the target), or
modelpack / peer without a limit, or null. A missed target is still a row (bench/all marks it MISSED);
a bench exits non-zero only when it could not measure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PREFIX = "BENCH "


def emit(
    operation: str,
    modelpack: float,
    limit: float | None = None,
    peer: float | None = None,
    *,
    unit: str = "s",
) -> dict[str, object]:
    """Print one BENCH line (flushed: bench/all reads it as it comes) and return what it said."""
    if limit:
        ratio: float | None = modelpack / limit
    elif peer:
        ratio = modelpack / peer
    else:
        ratio = None
    row: dict[str, object] = {
        "operation": operation,
        "modelpack": _round(modelpack),
        "limit": _round(limit),
        "peer": _round(peer),
        "ratio": None if ratio is None else round(ratio, 3),
    }
    if unit != "s":
        row["unit"] = unit
    print(PREFIX + json.dumps(row), flush=True)
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else (float(f"{value:.4g}") if abs(value) < 1e6 else round(value))


# --- the custom-handler project the image benchmarks build ------------------------------------------

USER_PINS = {"numpy": "2.4.6"}
PACKFILE = """\
name: {name}
version: 1.0.0
model:
  paths: [weights.bin]
  format: other
code:
  paths: [handler.py]
  handler: handler:Model
dependencies:
  lockfile: requirements.lock
  python: "3.11"
"""
HANDLER = """\
import numpy as np


class Model:
    def load(self, model_dir):
        self.scale = np.float32(2.0)  # the weights' content does not matter to these benchmarks

    def predict(self, inputs):
        return {"y": np.asarray(inputs["x"], dtype=np.float32) * self.scale}
"""
_CHUNK = 16 << 20


def make_project(root: Path, name: str, weights: int, requirements: str) -> Path:
    """A custom numpy-handler project in `root` with `weights` bytes of random weights (the handler
    ignores them); `requirements` is the lockfile text (USER_PINS, as the caller writes it)."""
    root.mkdir(parents=True)
    (root / "modelpack.yaml").write_text(PACKFILE.format(name=name))
    (root / "handler.py").write_text(HANDLER)
    (root / "requirements.lock").write_text(requirements)
    with open(root / "weights.bin", "wb") as f:
        left = weights
        while left:
            n = min(left, _CHUNK)
            f.write(os.urandom(n))
            left -= n
    return root


def du(path: Path) -> int:
    """Bytes of the files under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
