"""The evaluation tests' shared pieces: a deliberately biased classifier served by a custom handler, a
dataset for it, and its project (tests/test_evaluate.py, tests/test_evaluate_engine.py)."""

from __future__ import annotations

import random
import shutil
import textwrap
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
COUNT_FILE = "modelpack-eval-predicts.log"

# A deliberately biased classifier: the same score gets a +0.3 boost when sex == 1.
HANDLER = """
import os
import tempfile

import numpy as np


class Biased:
    def load(self, model_dir):
        self.count = os.path.join(tempfile.gettempdir(), "modelpack-eval-predicts.log")

    def predict(self, inputs):
        with open(self.count, "a") as f:  # one line per request: what the runtime served
            f.write("1\\n")
        x = np.asarray(inputs["input"], dtype=np.float32)
        p = np.clip(x[:, 0] + 0.3 * x[:, 1], 0.0, 1.0)
        return {
            "label": (p >= 0.5).astype(np.int64),
            "probabilities": np.stack([1.0 - p, p], axis=1).astype(np.float32),
        }
"""


def biased_predict(score: float, sex: int) -> tuple[int, float]:
    p = min(1.0, max(0.0, float(np.float32(score) + np.float32(0.3) * np.float32(sex))))
    return int(p >= 0.5), p


def make_dataset(path: Path, rows: int = 300) -> list[dict[str, str]]:
    rnd = random.Random(7)
    out = []
    for _ in range(rows):
        score = round(rnd.random(), 4)
        sex = rnd.randint(0, 1)
        truth = int(score >= 0.5) if rnd.random() > 0.1 else int(score < 0.5)  # 10% label noise
        band = rnd.choice(["18-30", "31-50", "51+"])
        out.append({"score": str(score), "sex": str(sex), "age_band": band, "label": str(truth)})
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["score,sex,age_band,label", *(",".join(r.values()) for r in out)]
    path.write_text("\n".join(lines) + "\n")
    return out


def make_project(root: Path, dataset: str, *, recorded: str = "", gates: str = "", extra: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "handler.py").write_text(HANDLER)
    (root / "weights.json").write_text("{}\n")
    shutil.copy(EXAMPLES / "custom-handler" / "requirements.lock", root / "requirements.lock")
    (root / "modelpack.yaml").write_text(
        textwrap.dedent(f"""\
        name: biased
        version: 1.0.0
        model: {{paths: [weights.json], format: other}}
        code: {{paths: [handler.py], handler: "handler:Biased"}}
        dependencies: {{lockfile: requirements.lock}}
        metrics:
          values: {{{recorded or "accuracy: 0.5"}}}
        tests:
          gates: [{gates}]
          evaluate:
            dataset: {dataset}
            features: [score, sex]
            target: label
            scores: probabilities
            prediction: label
            slices: [sex, age_band]
            batch: 32
        """)
        + extra
    )
    return root
