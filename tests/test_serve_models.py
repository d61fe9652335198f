"""Small real models for the serving runtime's tests, made here, plus checks that they are what we think.

The other test_serve_* modules import the builders from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from support.models import (
    ONNX_TYPES,
    affine_onnx,
    identity_onnx,
    iris_onnx,
)

# Every V2 datatype with its ONNX element type (string -> BYTES).
















def test_affine_model_computes_2x_plus_1(tmp_path: Path) -> None:
    session = ort.InferenceSession(str(affine_onnx(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_array_equal(y, x * 2 + 1)


def test_iris_model_has_label_and_probability_tensors(tmp_path: Path) -> None:
    session = ort.InferenceSession(str(iris_onnx(tmp_path / "iris.onnx")), providers=["CPUExecutionProvider"])
    assert [(o.name, o.type) for o in session.get_outputs()] == [
        ("label", "tensor(int64)"),
        ("probabilities", "tensor(float)"),
    ]
    label, proba = session.run(None, {"input": np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)})
    assert label.tolist() == [0]
    assert proba.shape == (1, 3)


def test_identity_model_covers_every_datatype(tmp_path: Path) -> None:
    session = ort.InferenceSession(
        str(identity_onnx(tmp_path / "id.onnx")), providers=["CPUExecutionProvider"]
    )
    assert len(session.get_inputs()) == len(ONNX_TYPES) == 13
