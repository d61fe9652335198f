"""What `modelpack test` measures on the served model, as the record keeps it: an evaluation on a
published dataset version and a load run. Written by the build from `tests.evaluate` / `tests.load`;
records built before these existed simply have neither (None)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TASKS = ("classification", "regression")
DEFAULT_BATCH = 64
DEFAULT_TOLERANCE = 0.02  # a recorded metric further than this from the measured one is a gap

# What an evaluation measures, by task (the `measured.` gate names); rules live here, once.
CLASSIFICATION_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
FAIRNESS_METRICS = ("demographic_parity_difference", "equalized_odds_difference")
LOAD_METRICS = ("requests", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "error_rate", "peak_memory_mb")
# Metrics where a lower value is better (a claim gap counts only in the bad direction).
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})


@dataclass(frozen=True)
class EvaluationPlan:
    dataset: str  # REG/REPO:VERSION (or @digest) of a published dataset
    features: tuple[str, ...]
    target: str
    task: str  # classification | regression
    file: str | None = None  # the CSV inside the dataset; None: its only .csv
    input: str = "input"  # the V2 input tensor the features go into, FP32 [N, len(features)]
    prediction: str | None = None  # the output holding predictions; None: the first output
    scores: str | None = None  # the output holding class scores [N, classes], for ROC AUC and log loss
    positive: str | None = None  # the positive class for fairness gaps (default: the larger of two)
    slices: tuple[str, ...] = ()
    batch: int = DEFAULT_BATCH
    tolerance: float = DEFAULT_TOLERANCE

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "features": list(self.features),
            "target": self.target,
            "task": self.task,
            "input": self.input,
            "slices": list(self.slices),
            "batch": self.batch,
            "tolerance": self.tolerance,
        }
        for key in ("file", "prediction", "scores", "positive"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> EvaluationPlan:
        def opt(key: str) -> str | None:
            v = obj.get(key)
            return None if v is None else str(v)

        return cls(
            dataset=str(obj["dataset"]),
            features=tuple(str(f) for f in obj.get("features") or ()),
            target=str(obj["target"]),
            task=str(obj.get("task") or "classification"),
            file=opt("file"),
            input=str(obj.get("input") or "input"),
            prediction=opt("prediction"),
            scores=opt("scores"),
            positive=opt("positive"),
            slices=tuple(str(s) for s in obj.get("slices") or ()),
            batch=int(obj.get("batch") or DEFAULT_BATCH),
            tolerance=float(obj.get("tolerance", DEFAULT_TOLERANCE)),
        )

    def metric_names(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS


@dataclass(frozen=True)
class LoadPlan:
    connections: int
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        return {"connections": self.connections, "durationSeconds": self.duration_s}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> LoadPlan:
        return cls(int(obj["connections"]), float(obj["durationSeconds"]))


def gate_names(recorded: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Every sourced gate name a test run can give a value: `recorded.X` for each recorded metric, and
    `measured.X`, `gap.X` (recorded minus measured, in the bad direction), `fairness.X`, `load.X` for
    what the run measures; those can come from `--evaluate` / `--load` too, so all are known."""
    measured = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
    names = [f"recorded.{m}" for m in recorded]
    names += [f"measured.{m}" for m in measured]
    names += [f"gap.{m}" for m in measured]
    names += [f"fairness.{m}" for m in FAIRNESS_METRICS]
    names += [f"load.{m}" for m in LOAD_METRICS]
    return tuple(names)
