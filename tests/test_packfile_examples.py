"""The shipped examples load cleanly, and their committed models reproduce their own golden cases."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from modelpack.bundle.datasets import hash_datasets
from modelpack.bundle.lockfile import load_lock
from modelpack.packfile import load_packfile
from modelpack.record.cases import Case, load_cases

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IRIS = EXAMPLES / "iris-onnx"
CUSTOM = EXAMPLES / "custom-handler"
_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64"}
_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}


def as_arrays(case: Case) -> dict[str, np.ndarray]:
    return {t.name: np.asarray(t.data, dtype=_DTYPES[t.datatype]).reshape(t.shape) for t in case.inputs}


def as_response(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "outputs": [
            {"name": n, "shape": list(a.shape), "datatype": _DATATYPES[a.dtype], "data": a.ravel().tolist()}
            for n, a in outputs.items()
        ]
    }


def test_iris_packfile_and_lock() -> None:
    pf = load_packfile(IRIS)
    assert pf.name == "iris-onnx" and pf.code.handler == "onnx" and pf.model.format == "onnx"
    assert [pf.relative(f) for f in pf.model.files] == ["model.onnx"]
    assert {d.name: d.package for d in pf.datasets} == {"iris-train": False, "iris-test": False}
    metrics = pf.metrics_dict()
    assert set(metrics) == {"accuracy", "f1_macro"}
    assert all(m.dataset == "iris-test" for m in metrics.values())
    assert all(g.passes(metrics[g.metric].value) for g in pf.tests.gates if g.metric in metrics)
    assert pf.params_dict()["model.solver"] == "newton-cg" and pf.params_dict()["model.tol"] == 1e-6

    lock = load_lock(pf.dependencies.lockfile)
    assert lock.python_version == pf.dependencies.python == "3.11"
    versions = lock.versions()
    assert {"onnxruntime", "numpy"} <= set(versions)
    assert all(p.hashes for p in lock.packages)
    assert "==" in lock.as_requirements() and "--hash=sha256:" in lock.as_requirements()

    entries = hash_datasets(pf.datasets)
    assert all(e.sha256 and e.sha256.startswith("sha256:") and e.files == 1 for e in entries)
    assert entries[1].uri and entries[1].path == "data/iris-test.csv"


def test_iris_model_reproduces_its_cases_with_onnxruntime() -> None:
    pf = load_packfile(IRIS)
    assert pf.tests.cases is not None
    cases = load_cases(pf.tests.cases)
    assert len(cases) >= 3
    session = ort.InferenceSession(str(pf.model.files[0]), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["label", "probabilities"]  # zipmap off: plain tensors a V2 server can return
    for case in cases:
        outputs = dict(zip(names, session.run(names, as_arrays(case)), strict=True))
        assert case.compare(as_response(outputs)) == (), case.name


def test_a_wrong_model_fails_the_iris_cases() -> None:
    cases = load_cases(IRIS / "cases.json")
    session = ort.InferenceSession(str(IRIS / "model.onnx"), providers=["CPUExecutionProvider"])
    failures = 0
    for case in cases:
        label, probabilities = session.run(["label", "probabilities"], as_arrays(case))
        shifted = {"label": (label + 1) % 3, "probabilities": probabilities[:, ::-1].copy()}
        failures += bool(case.compare(as_response(shifted)))
    assert failures == len(cases)


def test_custom_handler_example_reproduces_its_cases() -> None:
    pf = load_packfile(CUSTOM)
    assert pf.code.module == "handler" and pf.code.class_name == "LinearModel"
    assert [pf.relative(f) for f in pf.code.files] == ["handler.py"]
    lock = load_lock(pf.dependencies.lockfile)
    assert set(lock.versions()) == {"numpy"}

    spec = importlib.util.spec_from_file_location("example_custom_handler", CUSTOM / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = getattr(module, pf.code.class_name)()
    handler.load(CUSTOM)  # the weights sit next to modelpack.yaml, as they sit in /models in the image
    assert pf.tests.cases is not None
    for case in load_cases(pf.tests.cases):
        assert case.compare(as_response(handler.predict(as_arrays(case)))) == (), case.name
    with pytest.raises(ValueError, match=r"'features' must have shape \[N, 3\]"):
        handler.predict({"features": np.zeros((1, 2), dtype=np.float32)})


@pytest.mark.slow
def _train(dest: Path, **env: str) -> Path:
    dest.mkdir()
    shutil.copy(IRIS / "train.py", dest / "train.py")
    done = subprocess.run(
        [sys.executable, "train.py"],
        cwd=dest,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return dest


def test_iris_training_is_deterministic(tmp_path: Path) -> None:
    """What holds everywhere: the data, params and metrics the example writes are the committed bytes, and
    the retrained model gives the committed golden cases (predictions within their tolerance) and the
    committed graph. What holds on one machine only, the model's float bytes (BLAS kernels differ by CPU),
    is asserted only between two trainings on this machine, and there byte for byte."""
    a = _train(tmp_path / "a")
    for rel in ("metrics.json", "params.yaml", "data/iris-train.csv", "data/iris-test.csv"):
        assert (a / rel).read_bytes() == (IRIS / rel).read_bytes(), rel

    cases = load_cases(IRIS / "cases.json")
    retrained = ort.InferenceSession(str(a / "model.onnx"), providers=["CPUExecutionProvider"])
    for case in cases:
        label, probabilities = retrained.run(["label", "probabilities"], as_arrays(case))
        assert case.compare(as_response({"label": label, "probabilities": probabilities})) == (), case.name
    assert [c.name for c in load_cases(a / "cases.json")] == [c.name for c in cases]
    assert _graph(a / "model.onnx") == _graph(IRIS / "model.onnx")

    # Other kernels and thread counts of the same machine: the same fit within the cases' tolerance.
    b = _train(tmp_path / "b", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_CORETYPE="Prescott")
    rows = np.asarray([as_arrays(c)["input"][0] for c in cases], dtype=np.float32)
    p_a = retrained.run(["probabilities"], {"input": rows})[0]
    other = ort.InferenceSession(str(b / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(other.run(["probabilities"], {"input": rows})[0], p_a, rtol=1e-4, atol=1e-5)

    same = _train(tmp_path / "same")  # same machine, same environment: a fact, byte for byte
    for rel in ("model.onnx", "cases.json"):
        assert (same / rel).read_bytes() == (a / rel).read_bytes(), rel


def _graph(path: Path) -> tuple[object, ...]:
    """The model without its weights' values: opset, inputs, outputs, nodes, initializer names and shapes."""
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    return (
        tuple((o.domain, o.version) for o in m.opset_import),
        tuple(str(i.type) for i in g.input),
        tuple(str(o.type) for o in g.output),
        tuple((n.op_type, tuple(n.input), tuple(n.output)) for n in g.node),
        tuple((t.name, tuple(t.dims), t.data_type) for t in g.initializer),
    )


@pytest.mark.parametrize("example", [IRIS, CUSTOM], ids=lambda p: p.name)
def test_examples_pass_their_cases_through_the_serving_runtime(example: Path) -> None:
    """The cases file format and the runtime's V2 responses agree: each case, posted as a V2 infer request
    to the real serving app (in process, over ASGI), gets a response the case accepts."""
    import asyncio

    import httpx

    from modelpack.serve.app import ServingApp
    from modelpack.serve.config import ServingConfig

    pf = load_packfile(example)
    model = pf.relative(pf.model.files[0]) if pf.code.builtin else None
    # model_dir and code_dir are the project: files sit at the same relative paths as in /models and /code
    config = ServingConfig(
        name=pf.name, handler=pf.code.handler, model=model, model_dir=pf.root, code_dir=pf.root
    )
    app = ServingApp(config)
    app.load()
    assert pf.tests.cases is not None
    cases = load_cases(pf.tests.cases)

    async def run() -> list[tuple[str, int, dict[str, Any]]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as client:
            out = []
            for case in cases:
                r = await client.post(f"/v2/models/{pf.name}/infer", json=case.request())
                out.append((case.name, r.status_code, r.json()))
            return out

    for name, status, body in asyncio.run(run()):
        assert status == 200, body
        case = next(c for c in cases if c.name == name)
        assert case.compare(body) == (), (name, body)
