"""Helpers shared by test modules (moved from test_serve_models.py)."""

from __future__ import annotations

import functools
import textwrap
import uuid
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17


ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def affine_onnx(path: Path) -> Path:
    """y = x * 2 + 1 over float32 x of shape [N, 4]."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    return _save(model, path)


def identity_onnx(path: Path) -> Path:
    """One Identity per V2 datatype: input `in_<TYPE>` [N] -> output `out_<TYPE>` [N]."""
    nodes = [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in ONNX_TYPES]
    graph = helper.make_graph(
        nodes,
        "identity",
        [helper.make_tensor_value_info(f"in_{t}", e, ["N"]) for t, e in ONNX_TYPES.items()],
        [helper.make_tensor_value_info(f"out_{t}", e, ["N"]) for t, e in ONNX_TYPES.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    return _save(model, path)


def sequence_onnx(path: Path) -> Path:
    """x FP32 [N, 4] -> y = x (a tensor) and s = [x] (a sequence, which has no V2 form)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("SequenceConstruct", ["x"], ["s"])],
        "sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, ["N", 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    return _save(model, path)


def iris_onnx(path: Path, zipmap: bool = False) -> Path:
    """LogisticRegression on iris, converted with skl2onnx (inputs `input` FP32 [N, 4])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_iris_bytes(zipmap))
    return path


@functools.cache
def _iris_bytes(zipmap: bool) -> bytes:
    # Importing sklearn + skl2onnx and converting takes seconds: once per test process.
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(x.astype(np.float32), y)
    options = {id(clf): {"zipmap": zipmap}}
    model = to_onnx(
        clf, initial_types=[("input", FloatTensorType([None, 4]))], options=options, target_opset=OPSET
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def handler_module(code_dir: Path, body: str) -> str:
    """Write a handler module with a unique name under `code_dir`; returns its module name."""
    name = f"handler_{uuid.uuid4().hex[:12]}"
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return name
