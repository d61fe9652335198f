"""A model served by a Python class: a linear regression whose weights live in weights.json.

The serving runtime imports this module from the bundle's code/ folder, builds `LinearModel()` with no
arguments, calls `load(model_dir)` once (model_dir is the bundle's models/ folder, where weights.json
lands), then `predict(inputs)` per request with the V2 input tensors as numpy arrays by name.

    input  "features"  FP32 [N, 3]   rooms, area in m2, age in years
    output "price"     FP32 [N, 1]   price in thousands
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class LinearModel:
    def __init__(self) -> None:
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self.bias = np.zeros((0,), dtype=np.float32)
        self.features: list[str] = []

    def load(self, model_dir: Path) -> None:
        spec = json.loads((Path(model_dir) / "weights.json").read_text(encoding="utf-8"))
        self.features = list(spec["features"])
        self.weights = np.asarray(spec["weights"], dtype=np.float32)  # [n_features, n_outputs]
        self.bias = np.asarray(spec["bias"], dtype=np.float32)  # [n_outputs]
        if self.weights.shape != (len(self.features), len(self.bias)):
            raise ValueError(
                f"weights.json: weights have shape {self.weights.shape}, expected "
                f"({len(self.features)}, {len(self.bias)})"
            )

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "features" not in inputs:
            raise ValueError(f"expected an input named 'features', got {sorted(inputs)}")
        x = np.asarray(inputs["features"], dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(
                f"'features' must have shape [N, {len(self.features)}] ({', '.join(self.features)}), "
                f"got {list(x.shape)}"
            )
        return {"price": (x @ self.weights + self.bias).astype(np.float32)}
