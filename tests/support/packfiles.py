"""Helpers shared by test modules (moved from test_packfile.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

CASES = {
    "cases": [
        {
            "name": "one",
            "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}],
            "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [1]}],
        }
    ]
}


MINIMAL = """\
name: demo
model:
  paths: [model.onnx]
  format: onnx
dependencies:
  lockfile: requirements.lock
"""


def make_project(root: Path, packfile: str, extra: dict[str, str | bytes] | None = None) -> Path:
    files: dict[str, str | bytes] = {
        "model.onnx": b"\x08\x07fake-onnx-bytes",
        "requirements.lock": "numpy==2.0.0\n",
        "metrics.json": '{"accuracy": 0.97, "eval": {"f1": 0.9}}',
        "params.yaml": "lr: 0.01\nlayers: [64, 32]\nopt: {name: adam}\n",
        "cases.json": json.dumps(CASES),
        "data/train.csv": "a,b\n1,2\n",
        "data/test/part-0.csv": "a,b\n3,4\n",
        "handler.py": "class Model:\n    pass\n",
        "README.md": "# demo\n",
        **(extra or {}),
    }
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    (root / "modelpack.yaml").write_text(textwrap.dedent(packfile))
    return root / "modelpack.yaml"
