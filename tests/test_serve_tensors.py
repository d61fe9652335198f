"""V2 datatypes end to end (ONNX graph, custom handler), strict decoding, and fuzzed request bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from support.models import ONNX_TYPES, affine_onnx, handler_module, identity_onnx
from support.serving import Client, _body, _json, make_client

from modelpack.serve.tensors import DTYPES, TensorError, TensorSpec, decode_input, encode_output

# Values at the edges of each datatype's range, exactly representable in it.
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 7, 255],
    "UINT16": [0, 7, 65535],
    "UINT32": [0, 7, 2**32 - 1],
    "UINT64": [0, 7, 2**64 - 1],
    "INT8": [-128, 0, 127],
    "INT16": [-(2**15), 0, 2**15 - 1],
    "INT32": [-(2**31), 0, 2**31 - 1],
    "INT64": [-(2**63), 0, 2**63 - 1],
    "FP16": [-65504.0, 0.5, 65504.0],
    "FP32": [-1.5, 0.0, 2.0**127],
    "FP64": [-1e308, 0.1, 1e308],
    "BYTES": ["", "héllo", "日本"],
}

ECHO = """
class Handler:
    def load(self, model_dir):
        pass
    def predict(self, inputs):
        return dict(inputs)
"""


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Client:
    root = tmp_path_factory.mktemp("identity")
    identity_onnx(root / "models" / "id.onnx")
    return make_client(root, name="id", model="id.onnx")


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Client:
    root = tmp_path_factory.mktemp("echo")
    module = handler_module(root / "code", ECHO)
    return make_client(root, name="echo", handler=f"{module}:Handler")


def test_every_datatype_round_trips_through_an_onnx_graph(identity: Client) -> None:
    assert set(SAMPLES) == set(DTYPES) == set(ONNX_TYPES)
    meta = identity.get("/v2/models/id").json()
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {f"in_{t}": t for t in SAMPLES}
    inputs = [{"name": f"in_{t}", "shape": [3], "datatype": t, "data": v} for t, v in SAMPLES.items()]
    response = identity.infer({"inputs": inputs}, "id")
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    for datatype, values in SAMPLES.items():
        out = outputs[f"out_{datatype}"]
        assert (out["datatype"], out["shape"], out["data"]) == (datatype, [3], values), datatype


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_round_trips_through_a_custom_handler(echo: Client, datatype: str) -> None:
    values = SAMPLES[datatype]
    nested = [values[:1], values[1:2], values[2:]]
    tensor = {"name": "t", "shape": [3, 1], "datatype": datatype, "data": nested}
    response = echo.infer({"inputs": [tensor]}, "echo")
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [
        {"name": "t", "datatype": datatype, "shape": [3, 1], "data": values}
    ]


@pytest.mark.parametrize(
    ("datatype", "data", "needle"),
    [
        ("UINT8", [256], "value 256 is out of range for UINT8"),
        ("UINT64", [-1], "value -1 is out of range for UINT64"),
        ("INT8", [-129], "value -129 is out of range for INT8"),
        ("INT64", [2**63], "out of range for INT64"),
        ("INT32", [1.5], "must be integers for datatype INT32"),
        ("BOOL", [1], "must be booleans for datatype BOOL"),
        ("FP32", [True], "must be numbers for datatype FP32"),
        ("FP32", [None], "must be numbers"),
        ("FP32", ["1.5"], "must be numbers"),
        ("BYTES", [1], "must be strings for datatype BYTES"),
        ("INT64", [2**70], "value 1180591620717411303424 is out of range for INT64"),
        ("UINT64", [[2**64 - 1], [0.5]], "must be integers"),
    ],
)
def test_decoding_refuses_what_numpy_would_silently_change(
    datatype: str, data: list[Any], needle: str
) -> None:
    with pytest.raises(TensorError, match=r"^input 't': ") as info:
        decode_input({"name": "t", "shape": [len(data)], "datatype": datatype, "data": data}, None)
    assert needle in str(info.value)


def test_decoding_accepts_ints_for_floats_scalars_and_empty_tensors() -> None:
    _, floats = decode_input({"name": "t", "shape": [2], "datatype": "FP64", "data": [1, 2.5]}, None)
    assert floats.dtype == np.float64 and floats.tolist() == [1.0, 2.5]
    _, scalar = decode_input({"name": "t", "shape": [], "datatype": "INT32", "data": 7}, None)
    assert scalar.shape == () and scalar.dtype == np.int32 and int(scalar) == 7
    _, empty = decode_input({"name": "t", "shape": [0, 4], "datatype": "UINT8", "data": []}, None)
    assert empty.shape == (0, 4) and empty.dtype == np.uint8
    spec = TensorSpec("t", "FP32", (-1, 4))
    _, dynamic = decode_input({"name": "t", "shape": [5, 4], "datatype": "FP32", "data": [0] * 20}, spec)
    assert dynamic.shape == (5, 4)


def test_encoding_maps_numpy_strings_to_bytes() -> None:
    assert encode_output("s", np.array(["a", "bc"])) == {
        "name": "s",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["a", "bc"],
    }
    assert encode_output("b", np.array([b"x"]))["data"] == ["x"]


# Bodies that look like V2 requests, with every field sometimes wrong.


@pytest.fixture(scope="module")
def affine(tmp_path_factory: pytest.TempPathFactory) -> Client:
    root = tmp_path_factory.mktemp("affine")
    affine_onnx(root / "models" / "m.onnx")
    return make_client(root, name="affine", model="m.onnx")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_body | _json)
def test_malformed_requests_are_never_a_server_error(affine: Client, echo: Client, body: Any) -> None:
    raw = json.dumps(body)
    for client, model in ((affine, "affine"), (echo, "echo")):
        response = client.infer(raw, model)
        assert response.status_code in (200, 400), (model, response.text)
        reply = response.json()
        assert ("outputs" in reply) if response.status_code == 200 else isinstance(reply["error"], str)


@pytest.mark.parametrize("extra", [{"datatype": "FP16"}, {"shape": [0, 4], "data": []}])
def test_edge_requests_against_onnx(tmp_path: Path, extra: dict[str, Any]) -> None:
    affine_onnx(tmp_path / "models" / "m.onnx")
    client = make_client(tmp_path, name="affine", model="m.onnx")
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4], **extra}
    response = client.infer({"inputs": [tensor]})
    if extra.get("datatype") == "FP16":
        assert (
            response.status_code == 400 and "FP16 does not match the model's FP32" in response.json()["error"]
        )
    else:
        assert response.status_code == 200 and response.json()["outputs"][0]["shape"] == [0, 4]


@pytest.mark.parametrize("data", [[1e39], [1, -1e39], [2**200]])
def test_a_float_the_datatype_cannot_hold_is_refused_not_inf(data: list[Any]) -> None:
    with pytest.raises(TensorError, match=r"^input 't': a value is out of range for FP32"):
        decode_input({"name": "t", "shape": [len(data)], "datatype": "FP32", "data": data}, None)
