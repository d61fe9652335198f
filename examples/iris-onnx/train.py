"""Train a tiny iris classifier and write everything modelpack records and ships.

Run from this directory: `python train.py`. Deterministic on one machine (fixed seed): rerunning gives the
same model.onnx, metrics.json, params.yaml, data/*.csv and cases.json. Across CPUs the fitted floats may
differ in their last bits (BLAS kernels differ), so the solver is Newton-CG run to a tight tolerance: the
fit is then the unique optimum to well within the golden cases' tolerance on any machine (measured with
five OpenBLAS core types: probabilities agree within 2e-6), where lbfgs's early stop differed by 5e-3.
The iris data ships inside scikit-learn (`load_iris`): no download.

Outputs:
  model.onnx            LogisticRegression exported with skl2onnx; input "input" float32 [N, 4];
                        outputs "label" int64 [N] and "probabilities" float32 [N, 3] (zipmap off)
  metrics.json          accuracy and macro F1 on the test split (dataset iris-test)
  params.yaml           the training parameters
  data/iris-train.csv   the train split; data/iris-test.csv the test split
  cases.json            golden cases: a few test rows with the outputs onnxruntime gives for them
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
PARAMS = {
    "seed": 42,
    "test_size": 0.3,
    "model": {"type": "LogisticRegression", "C": 1.0, "max_iter": 500, "solver": "newton-cg", "tol": 1e-6},
    "onnx": {"target_opset": 17},
}
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CASES_PER_CLASS = 2  # the first test rows of each class are kept as golden cases
TOLERANCE = {"abs": 1e-5, "rel": 1e-4}


def main() -> None:
    iris = load_iris()
    x = iris.data.astype(np.float32)
    y = iris.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=PARAMS["test_size"], random_state=PARAMS["seed"], stratify=y
    )
    m = PARAMS["model"]
    model = LogisticRegression(C=m["C"], max_iter=m["max_iter"], solver=m["solver"], tol=m["tol"])
    model.fit(x_train, y_train)

    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": False}},
        target_opset=PARAMS["onnx"]["target_opset"],
    )
    onx.producer_version = ""  # keep the bytes independent of the installed skl2onnx patch version
    (HERE / "model.onnx").write_bytes(onx.SerializeToString())

    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    labels = session.run(["label"], {"input": x_test})[0]
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, labels)), 6),
        "f1_macro": round(float(f1_score(y_test, labels, average="macro")), 6),
    }
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (HERE / "params.yaml").write_text(_params_yaml())
    (HERE / "data").mkdir(exist_ok=True)
    _write_csv(HERE / "data" / "iris-train.csv", x_train, y_train)
    _write_csv(HERE / "data" / "iris-test.csv", x_test, y_test)
    (HERE / "cases.json").write_text(_cases_json(session, x_test, y_test, iris.target_names))
    print(json.dumps(metrics))


def _cases_json(
    session: ort.InferenceSession, x_test: np.ndarray, y_test: np.ndarray, names: np.ndarray
) -> str:
    rows = sorted(int(i) for c in range(len(names)) for i in np.flatnonzero(y_test == c)[:CASES_PER_CLASS])
    cases = []
    for row in rows:
        features = x_test[row : row + 1]
        label, probabilities = session.run(["label", "probabilities"], {"input": features})
        cases.append(
            {
                "name": f"test-row-{row}-{names[int(label[0])]}",
                "inputs": [_tensor("input", features, "FP32")],
                "outputs": [
                    _tensor("label", label, "INT64"),
                    _tensor("probabilities", probabilities, "FP32"),
                ],
            }
        )
    # One tensor per line: small diffs when the model changes, and still plain JSON.
    blocks = []
    for case in cases:
        inputs = ",\n".join(f"        {json.dumps(t)}" for t in case["inputs"])
        outputs = ",\n".join(f"        {json.dumps(t)}" for t in case["outputs"])
        blocks.append(
            f'    {{\n      "name": {json.dumps(case["name"])},\n'
            f'      "inputs": [\n{inputs}\n      ],\n      "outputs": [\n{outputs}\n      ]\n    }}'
        )
    body = ",\n".join(blocks)
    return f'{{\n  "tolerance": {json.dumps(TOLERANCE)},\n  "cases": [\n{body}\n  ]\n}}\n'


def _tensor(name: str, array: np.ndarray, datatype: str) -> dict[str, object]:
    # float32 -> Python float through str() keeps the shortest repr that round-trips to the same float32.
    data = [float(str(v)) for v in array.ravel()] if array.dtype.kind == "f" else array.ravel().tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def _params_yaml() -> str:
    m = PARAMS["model"]
    return (
        "# written by train.py\n"
        f"seed: {PARAMS['seed']}\n"
        f"test_size: {PARAMS['test_size']}\n"
        "model:\n"
        f"  type: {m['type']}\n"
        f"  C: {m['C']}\n"
        f"  max_iter: {m['max_iter']}\n"
        f"  solver: {m['solver']}\n"
        f"  tol: {m['tol']:.1e}\n"  # 1.0e-06: YAML 1.1 reads 1e-06 as text
        "onnx:\n"
        f"  target_opset: {PARAMS['onnx']['target_opset']}\n"
    )


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*FEATURES, "species"])
        for features, label in zip(x, y, strict=True):
            writer.writerow([f"{v:.1f}" for v in features] + [int(label)])


if __name__ == "__main__":
    main()
