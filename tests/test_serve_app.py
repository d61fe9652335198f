"""The V2 routes of the serving runtime, in process through httpx's ASGI transport, on real ONNX models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.models import affine_onnx, handler_module, iris_onnx
from support.serving import Client, make_client

from modelpack import __version__
from modelpack.serve.app import ServingApp
from modelpack.serve.config import ServingConfig


@pytest.fixture
def affine(tmp_path: Path) -> Client:
    affine_onnx(tmp_path / "models" / "m.onnx")
    return make_client(
        tmp_path,
        name="affine",
        version="3",
        model="m.onnx",
        bundle_digest="sha256:" + "a" * 64,
        index_digest="sha256:" + "b" * 64,
        record_summary={"metrics": {"accuracy": 0.97}},
    )


@pytest.fixture
def custom(tmp_path: Path) -> Callable[[str], Client]:
    def build(body: str) -> Client:
        module = handler_module(tmp_path / "code", body)
        return make_client(tmp_path, name="custom", handler=f"{module}:Handler")

    return build


def x_tensor(
    data: Any, shape: list[int] | None = None, name: str = "x", datatype: str = "FP32"
) -> dict[str, Any]:
    return {"name": name, "shape": shape if shape is not None else [1, 4], "datatype": datatype, "data": data}


def test_health_server_and_model_metadata(affine: Client) -> None:
    assert affine.get("/v2/health/live").json() == {"live": True}
    assert affine.get("/v2/health/ready").json() == {"ready": True}
    assert affine.get("/v2").json() == {"name": "modelpack", "version": __version__, "extensions": []}
    meta = affine.get("/v2/models/affine")
    assert meta.status_code == 200
    assert meta.json() == {
        "name": "affine",
        "versions": ["3"],
        "platform": "onnxruntime",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
    }
    assert affine.get("/v2/models/affine/ready").json() == {"name": "affine", "ready": True}
    assert affine.get("/v2/models/affine/versions/3/ready").status_code == 200
    assert affine.get("/v2/models/affine/versions/3").json()["name"] == "affine"


def test_metadata_reports_version_digests_and_record_summary(affine: Client) -> None:
    body = affine.get("/metadata").json()
    assert body["name"] == "affine" and body["version"] == "3"
    assert body["bundle_digest"] == "sha256:" + "a" * 64
    assert body["index_digest"] == "sha256:" + "b" * 64
    assert body["record_summary"] == {"metrics": {"accuracy": 0.97}}


def test_not_ready_until_loaded(tmp_path: Path) -> None:
    affine_onnx(tmp_path / "models" / "m.onnx")
    client = make_client(tmp_path, load=False, name="affine", model="m.onnx")
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/affine/ready").json() == {"name": "affine", "ready": False}
    assert client.infer({"inputs": [x_tensor([1, 2, 3, 4])]}).status_code == 503
    client.app.load()
    assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "needle"),
    [
        ("GET", "/v2/models/other", 404, "serves 'affine'"),
        ("POST", "/v2/models/other/infer", 404, "serves 'affine'"),
        ("GET", "/v2/models/affine/versions/9/ready", 404, "serves 'affine' version 3 "),
        ("POST", "/v2/models/affine/versions/9/infer", 404, "(/v2/models/affine/versions/3, or"),
        ("GET", "/nothing", 404, "no route /nothing"),
        ("GET", "/v2/models/affine/infer", 405, "use POST"),
        ("POST", "/v2/health/live", 405, "use GET"),
    ],
)
def test_unknown_models_routes_and_methods(
    affine: Client, method: str, path: str, status: int, needle: str
) -> None:
    response = affine.request(method, path)
    assert response.status_code == status
    assert needle in response.json()["error"]


def test_infer_nested_and_flat_data(affine: Client) -> None:
    nested = affine.infer({"id": "r-1", "inputs": [x_tensor([[0, 1, 2, 3], [4, 5, 6, 7]], [2, 4])]})
    assert nested.status_code == 200, nested.text
    body = nested.json()
    assert body["model_name"] == "affine" and body["model_version"] == "3" and body["id"] == "r-1"
    assert body["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [2, 4], "data": [1, 3, 5, 7, 9, 11, 13, 15]}
    ]
    flat = affine.infer({"inputs": [x_tensor(list(range(8)), [2, 4])], "parameters": {"content_type": "np"}})
    assert flat.json()["outputs"] == body["outputs"]
    generated = flat.json()["id"]  # generated when the request has none, unique per request
    assert generated and generated != affine.infer({"inputs": [x_tensor([1, 2, 3, 4])]}).json()["id"]


def test_iris_golden_labels_and_output_selection(tmp_path: Path) -> None:
    iris_onnx(tmp_path / "models" / "iris.onnx")
    client = make_client(tmp_path, name="iris", model="iris.onnx")
    rows = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]
    request = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": rows}]}
    outputs = {o["name"]: o for o in client.infer(request, "iris").json()["outputs"]}
    assert outputs["label"]["data"] == [0, 1, 2] and outputs["label"]["datatype"] == "INT64"
    proba = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    only = client.infer({**request, "outputs": [{"name": "label"}]}, "iris").json()["outputs"]
    assert [o["name"] for o in only] == ["label"]
    bad = client.infer({**request, "outputs": [{"name": "nope"}]}, "iris")
    assert bad.status_code == 400 and "unknown output 'nope'" in bad.json()["error"]


def test_zipmap_probabilities_become_a_dense_tensor(tmp_path: Path) -> None:
    iris_onnx(tmp_path / "models" / "iris.onnx", zipmap=True)
    client = make_client(tmp_path, name="iris", model="iris.onnx")
    outputs = client.get("/v2/models/iris").json()["outputs"]
    assert {"name": "output_probability", "datatype": "FP32", "shape": [-1, -1]} in outputs
    request = {
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2]] * 2}]
    }
    result = {o["name"]: o for o in client.infer(request, "iris").json()["outputs"]}
    proba = result["output_probability"]
    assert proba["shape"] == [2, 3] and proba["datatype"] == "FP32"
    assert max(range(3), key=lambda i: proba["data"][i]) == 0


def test_non_tensor_onnx_outputs_are_left_out_or_a_named_500(tmp_path: Path) -> None:
    from support.models import sequence_onnx

    sequence_onnx(tmp_path / "models" / "seq.onnx")
    client = make_client(tmp_path, name="seq", model="seq.onnx")
    assert [o["name"] for o in client.get("/v2/models/seq").json()["outputs"]] == ["y"]
    request: dict[str, Any] = {"inputs": [x_tensor([1, 2, 3, 4])]}
    default = client.infer(request, "seq")
    assert [o["name"] for o in default.json()["outputs"]] == ["y"]
    asked = client.infer({**request, "outputs": [{"name": "s"}]}, "seq")
    assert asked.status_code == 500
    assert asked.json()["error"].startswith("output 's' has ONNX type seq(tensor(float))")


BAD_REQUESTS: list[tuple[Any, str]] = [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_000, "nested too deeply"),
    (b"[1e400]", "not valid JSON"),
    (b"[]", "JSON object"),
    ({}, "'inputs'"),
    ({"inputs": []}, "'inputs'"),
    ({"inputs": [3]}, "each input must be an object"),
    ({"inputs": [{"shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "no 'name'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "input 'x': missing 'shape'"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "data": [1, 2, 3, 4]}]}, "input 'x': missing 'datatype'"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}, "input 'x': missing 'data'"),
    ({"inputs": [x_tensor([1, 2, 3], [1, 4])]}, "input 'x': 'data' has 3 elements, shape [1, 4] needs 4"),
    ({"inputs": [x_tensor([1, 2, 3], [1, 3])]}, "input 'x': shape [1, 3] does not match the model's [-1, 4]"),
    ({"inputs": [x_tensor([1, 2, 3, 4], [4])]}, "input 'x': shape [4] does not match"),
    ({"inputs": [x_tensor([1, 2, 3, 4], [1, -4])]}, "input 'x': 'shape' must be a list of non-negative"),
    ({"inputs": [x_tensor([1, 2, 3, 4], datatype="FP99")]}, "input 'x': unknown datatype 'FP99'"),
    (
        {"inputs": [x_tensor([1, 2, 3, 4], datatype="FP64")]},
        "input 'x': datatype FP64 does not match the model's FP32",
    ),
    ({"inputs": [x_tensor([1, 2, 3, 4], name="z")]}, "unknown input 'z'; the model's inputs are: x"),
    ({"inputs": [x_tensor(["a", "b", "c", "d"])]}, "input 'x': 'data' must be numbers for datatype FP32"),
    ({"inputs": [x_tensor([[1, 2], [3]], [1, 4])]}, "input 'x': 'data' is ragged"),
    ({"inputs": [x_tensor([1, 2, 3, 4]), x_tensor([1, 2, 3, 4])]}, "input 'x' is given twice"),
    ({"id": 5, "inputs": [x_tensor([1, 2, 3, 4])]}, "'id' must be a string"),
    ({"parameters": [], "inputs": [x_tensor([1, 2, 3, 4])]}, "'parameters' must be an object"),
    ({"outputs": "y", "inputs": [x_tensor([1, 2, 3, 4])]}, "'outputs' must be a list"),
    ({"inputs": [x_tensor(json.loads("[" * 100 + "1" + "]" * 100), [1, 4])]}, "input 'x': 'data' is ragged"),
]


@pytest.mark.parametrize(("body", "needle"), BAD_REQUESTS)
def test_bad_requests_are_400_naming_the_problem(affine: Client, body: Any, needle: str) -> None:
    response = affine.infer(body)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]
    assert affine.infer({"inputs": [x_tensor([1, 2, 3, 4])]}).status_code == 200


def test_missing_input_is_named(tmp_path: Path) -> None:
    from support.models import identity_onnx

    identity_onnx(tmp_path / "models" / "id.onnx")
    client = make_client(tmp_path, name="id", model="id.onnx")
    response = client.infer(
        {"inputs": [{"name": "in_FP32", "shape": [1], "datatype": "FP32", "data": [1]}]}, "id"
    )
    assert response.status_code == 400
    assert "missing input 'in_BOOL' (BOOL [-1])" in response.json()["error"]


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    affine_onnx(tmp_path / "models" / "m.onnx")
    client = make_client(tmp_path, name="affine", model="m.onnx", max_body_bytes=100)
    response = client.infer({"inputs": [x_tensor([1.0] * 40, [10, 4])]})
    assert response.status_code == 413 and "max_body_bytes" in response.json()["error"]


def test_handler_value_error_is_400_other_errors_500_with_one_traceback(
    custom: Callable[[str], Client], caplog: pytest.LogCaptureFixture
) -> None:
    client = custom(
        """
        class Handler:
            def load(self, model_dir):
                self.calls = 0
            def predict(self, inputs):
                self.calls += 1
                if self.calls == 1:
                    raise ValueError("weights are upside down")
                if self.calls in (2, 3):
                    raise KeyError("lost")
                return {"y": inputs["x"] + 1}
        """
    )
    request = {"inputs": [x_tensor([1, 2, 3, 4])]}
    refused = client.infer(request, "custom")
    assert refused.status_code == 400
    assert refused.json() == {"error": "weights are upside down"}
    caplog.set_level("ERROR", "modelpack.serve")
    failed = [client.infer({**request, "id": f"req-{i}"}, "custom") for i in (1, 2)]
    assert [f.status_code for f in failed] == [500, 500]
    assert "request id req-2" in failed[1].json()["error"] and "Traceback" not in failed[1].text
    assert caplog.text.count("Traceback") == 1 and "request id req-2" in caplog.text
    ok = client.infer(request, "custom")
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("returns", "status", "needle"),
    [
        ("inputs['x'] * 3", 200, None),
        ("'text'", 500, "handler returned str"),
        ("__import__('sys').exit(3)", 500, "handler failed: SystemExit: 3"),
        ("int('x')", 400, "invalid literal for int()"),
        ("{'c': np.array([1j])}", 500, "output 'c': numpy dtype complex128 has no V2 datatype"),
        ("{'b': np.array([b'\\xff'], dtype=object)}", 500, "output 'b': BYTES element is not UTF-8"),
        ("{'r': [[1, 2], [3]]}", 500, "output 'r' is not an array"),
    ],
)
def test_custom_handler_outputs(
    custom: Callable[[str], Client], returns: str, status: int, needle: str | None
) -> None:
    client = custom(
        f"""
        import numpy as np
        class Handler:
            def load(self, model_dir):
                pass
            def predict(self, inputs):
                return {returns}
        """
    )
    response = client.infer({"inputs": [x_tensor([1, 2, 3, 4])]}, "custom")
    assert response.status_code == status, response.text
    if needle is None:
        assert response.json()["outputs"] == [
            {"name": "output", "datatype": "FP32", "shape": [1, 4], "data": [3, 6, 9, 12]}
        ]
    else:
        assert needle in response.json()["error"]


def test_custom_handler_declared_signature_validates_requests(custom: Callable[[str], Client]) -> None:
    client = custom(
        """
        from modelpack.serve import TensorSpec
        class Handler:
            def load(self, model_dir):
                self.inputs = [TensorSpec("text", "BYTES", (-1,))]
                self.outputs = [TensorSpec("length", "INT64", (-1,))]
            def predict(self, inputs):
                return {"length": __import__("numpy").array([len(s) for s in inputs["text"]])}
        """
    )
    meta = client.get("/v2/models/custom").json()
    assert meta["platform"] == "python" and meta["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]}
    ]
    ok = client.infer(
        {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "héllo"]}]}, "custom"
    )
    assert ok.json()["outputs"][0]["data"] == [2, 5]
    wrong = client.infer(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [1]}]}, "custom"
    )
    assert (
        wrong.status_code == 400
        and "datatype INT64 does not match the model's BYTES" in wrong.json()["error"]
    )


def test_thread_inference_gives_the_same_answers(tmp_path: Path) -> None:
    affine_onnx(tmp_path / "models" / "m.onnx")
    client = make_client(tmp_path, name="affine", model="m.onnx", inference="thread")
    response = client.infer({"inputs": [x_tensor([1, 2, 3, 4])]})
    assert response.json()["outputs"][0]["data"] == [3, 5, 7, 9]


def _lifespan(app: ServingApp) -> list[Mapping[str, Any]]:
    sent: list[Mapping[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Mapping[str, Any]:
        return next(messages)

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    return sent


def test_lifespan_loads_the_model_or_reports_why_not(tmp_path: Path) -> None:
    affine_onnx(tmp_path / "models" / "m.onnx")
    good = ServingApp(ServingConfig(name="affine", model="m.onnx", model_dir=tmp_path / "models"))
    assert [m["type"] for m in _lifespan(good)] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert good.model is not None
    bad = ServingApp(ServingConfig(name="affine", model="missing.onnx", model_dir=tmp_path / "models"))
    (failed,) = _lifespan(bad)
    assert failed["type"] == "lifespan.startup.failed"
    assert "missing.onnx not found" in failed["message"]


def test_nan_outputs_are_written_as_null(custom: Callable[[str], Client]) -> None:
    client = custom(
        """
        import numpy as np
        class Handler:
            def load(self, model_dir):
                pass
            def predict(self, inputs):
                return np.array([np.nan, np.inf])
        """
    )
    response = client.infer({"inputs": [x_tensor([1, 2, 3, 4])]}, "custom")
    assert json.loads(response.text)["outputs"][0]["data"] == [None, None]
