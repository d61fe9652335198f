"""ONNX for `modelpack init`: a tiny linear model to start from, and golden cases for a model the user has.

The scaffold must build and pass its own tests as generated, so the golden cases come from running the
model: onnxruntime when it is installed (the engine the serving image runs, so the numbers agree), else
onnx's own reference evaluator (pure numpy, always there with onnx). A model neither can run, or whose
inputs are not plain numeric tensors, gets no cases, and the caller says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The scaffold's model, shared by the ONNX and the Python handler: output = input @ WEIGHTS + BIAS.
# Powers of two and small integers, so the expected outputs are exact in FP32 on any engine.
WEIGHTS = ((0.5,), (-1.0,), (2.0,))
BIAS = (0.25,)
INPUT = "input"
OUTPUT = "output"
SAMPLES = (("one-row", ((1.0, 2.0, 3.0),)), ("two-rows", ((0.0, 0.0, 0.0), (4.0, -2.0, 0.5))))
EXACT = {"abs": 1e-06, "rel": 1e-06}
MEASURED = {"abs": 1e-05, "rel": 1e-04}  # cases from a run on the host; the image may differ in the ulps

_OPSET = 17
_IR_VERSION = 8  # readable by every onnxruntime since 1.10, not just the newest

# ONNX TensorProto element type -> (numpy dtype, V2 datatype)
_ELEM: dict[int, tuple[str, str]] = {
    1: ("float32", "FP32"),
    2: ("uint8", "UINT8"),
    3: ("int8", "INT8"),
    4: ("uint16", "UINT16"),
    5: ("int16", "INT16"),
    6: ("int32", "INT32"),
    7: ("int64", "INT64"),
    9: ("bool", "BOOL"),
    10: ("float16", "FP16"),
    11: ("float64", "FP64"),
    12: ("uint32", "UINT32"),
    13: ("uint64", "UINT64"),
}
_V2 = {dtype: v2 for dtype, v2 in _ELEM.values()}


@dataclass(frozen=True)
class CaseSet:
    """Golden cases as the cases file holds them, or the reason there are none."""

    cases: tuple[dict[str, Any], ...]
    tolerance: dict[str, float]
    reason: str | None = None


def linear_cases(input_name: str = INPUT, output_name: str = OUTPUT) -> CaseSet:
    """The scaffold model's cases, computed here rather than by running it: they check the engine too."""
    cases = []
    for name, rows in SAMPLES:
        outputs = [
            [sum(x * w[j] for x, w in zip(row, WEIGHTS, strict=True)) + BIAS[j] for j in range(len(BIAS))]
            for row in rows
        ]
        cases.append(
            {
                "name": name,
                "inputs": [_tensor(input_name, [len(rows), len(WEIGHTS)], "FP32", rows)],
                "outputs": [_tensor(output_name, [len(rows), len(BIAS)], "FP32", outputs)],
            }
        )
    return CaseSet(tuple(cases), EXACT)


def linear_model_bytes() -> bytes:
    """The scaffold model as ONNX: MatMul + Add, input "input" FP32 [N, 3], output "output" FP32 [N, 1]."""
    import onnx
    from onnx import TensorProto, helper

    n_in, n_out = len(WEIGHTS), len(BIAS)
    weights = helper.make_tensor("weights", TensorProto.FLOAT, [n_in, n_out], [w for r in WEIGHTS for w in r])
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [n_out], list(BIAS))
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [INPUT, "weights"], ["product"]),
            helper.make_node("Add", ["product", "bias"], [OUTPUT]),
        ],
        "linear",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", n_out])],
        initializer=[weights, bias],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="modelpack init"
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def check_model(path: Path) -> str | None:
    """None when `path` parses as an ONNX model, else what is wrong with it."""
    import onnx

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises protobuf's DecodeError and others: any failure means "not ONNX"
        return f"not an ONNX model ({type(e).__name__})"
    return None


def cases_for(path: Path, run: Runner | None = None) -> CaseSet:
    """Golden cases for the ONNX model at `path`: deterministic inputs, the outputs `run` gives."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initialized = {init.name for init in model.graph.initializer}
    feed: dict[str, np.ndarray] = {}
    inputs = []
    for value in model.graph.input:
        if value.name in initialized:
            continue
        kind = value.type.WhichOneof("value")
        elem = value.type.tensor_type.elem_type if kind == "tensor_type" else None
        if elem not in _ELEM:
            return CaseSet((), MEASURED, f"input '{value.name}' is not a numeric tensor")
        dtype, v2 = _ELEM[elem]
        # a symbolic or unknown dimension (a batch size, usually) becomes 1
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]
        size = math.prod(shape)
        values = np.arange(size) % 2 if dtype == "bool" else (np.arange(size) % 5) * 0.5 + 0.5
        array = values.astype(dtype).reshape(shape)
        feed[value.name] = array
        inputs.append(_tensor(value.name, shape, v2, _plain(array)))
    try:
        names, results = (run or default_runner())(path, model, feed)
    except Exception as e:  # whatever the engine raises, the user writes the cases by hand
        return CaseSet((), MEASURED, f"running it on sample inputs failed ({type(e).__name__}: {e})")
    outputs = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, np.ndarray) and str(result.dtype) in _V2 and _finite(result):
            outputs.append(_tensor(name, list(result.shape), _V2[str(result.dtype)], _plain(result)))
    if not outputs:
        return CaseSet((), MEASURED, "none of its outputs is a finite numeric tensor")
    return CaseSet(({"name": "sample", "inputs": inputs, "outputs": outputs},), MEASURED)


Runner = Callable[[Path, Any, dict[str, np.ndarray]], tuple[list[str], Sequence[Any]]]


def run_with_onnxruntime(
    path: Path, model: Any, feed: dict[str, np.ndarray]
) -> tuple[list[str], Sequence[Any]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return names, session.run(names, feed)


def run_with_reference(
    path: Path, model: Any, feed: dict[str, np.ndarray]
) -> tuple[list[str], Sequence[Any]]:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model)
    results = list(evaluator.run(None, feed))
    return list(evaluator.output_names), results


def default_runner() -> Runner:
    """onnxruntime when installed (what the image serves with), else onnx's reference evaluator."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return run_with_reference
    return run_with_onnxruntime


def _finite(array: np.ndarray) -> bool:
    return array.dtype.kind != "f" or bool(np.isfinite(array).all())


def _plain(array: np.ndarray) -> list[Any]:
    """Flat Python values; floats as the shortest text that reads back to the same FP32/FP16 value."""
    flat = array.ravel()
    if flat.dtype.kind == "f":
        return [float(str(x)) for x in flat]
    return [x.item() for x in flat]


def _tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}
