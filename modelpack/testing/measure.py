"""Metrics of the served model's answers, computed by scikit-learn; fairness gaps by fairlearn. Pure:
labels, predictions and scores in, numbers out (the requests that produced them are evaluate.py's)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpack.record.evaluation import FAIRNESS_METRICS


@dataclass(frozen=True)
class SliceResult:
    column: str
    value: str
    rows: int
    metrics: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "value": self.value, "rows": self.rows, "metrics": dict(self.metrics)}


@dataclass(frozen=True)
class Measurement:
    task: str
    rows: int
    metrics: Mapping[str, float]  # accuracy, f1_macro, ... or mae, rmse, r2
    labels: tuple[str, ...] = ()  # classification: the class labels, in confusion-matrix order
    per_class: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    confusion: tuple[tuple[int, ...], ...] = ()  # rows: true label, columns: predicted
    slices: tuple[SliceResult, ...] = ()
    fairness: Mapping[str, float] = field(default_factory=dict)  # the largest gap over the slice columns
    fairness_by_column: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what could not be computed, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "rows": self.rows,
            "metrics": dict(self.metrics),
            "labels": list(self.labels),
            "perClass": {k: dict(v) for k, v in self.per_class.items()},
            "confusionMatrix": [list(r) for r in self.confusion],
            "slices": [s.to_json() for s in self.slices],
            "fairness": dict(self.fairness),
            "fairnessByColumn": {k: dict(v) for k, v in self.fairness_by_column.items()},
            "notes": list(self.notes),
        }


def label(value: object) -> str:
    """One spelling per class: the CSV's "2", the model's 2 and 2.0 are the same class "2"."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    text = str(value).strip()
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if math.isfinite(f) and f.is_integer() else text


def ordered_labels(values: Sequence[str]) -> tuple[str, ...]:
    """Sorted as a model's classes are (numerically when they are numbers): score column i is class i."""
    unique = set(values)
    try:
        return tuple(sorted(unique, key=float))
    except ValueError:
        return tuple(sorted(unique))


def classification(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    scores: Sequence[Sequence[float]] | None = None,
    slices: Mapping[str, Sequence[str]] | None = None,
    positive: str | None = None,
) -> Measurement:
    import numpy as np
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = ordered_labels([*y_true, *y_pred])
    notes: list[str] = []
    score_array = None
    if scores is not None:
        score_array = np.asarray(scores, dtype=float)
        if score_array.ndim != 2 or score_array.shape[1] != len(labels):
            notes.append(
                f"scores have {score_array.shape[-1] if score_array.ndim else 0} columns for "
                f"{len(labels)} classes: ROC AUC and log loss not computed"
            )
            score_array = None
    metrics = _classification_metrics(y_true, y_pred, score_array, labels, notes)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(labels), zero_division=0)
    per_class = {
        lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": float(s[i])}
        for i, lab in enumerate(labels)
    }
    confusion = confusion_matrix(y_true, y_pred, labels=list(labels))
    slice_results = _slices(y_true, y_pred, score_array, labels, slices or {})
    fairness, by_column = _fairness(y_true, y_pred, labels, slices or {}, positive, notes)
    return Measurement(
        task="classification",
        rows=len(y_true),
        metrics=metrics,
        labels=labels,
        per_class=per_class,
        confusion=tuple(tuple(int(x) for x in row) for row in confusion),
        slices=slice_results,
        fairness=fairness,
        fairness_by_column=by_column,
        notes=tuple(dict.fromkeys(notes)),
    )


def _classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], scores: Any, labels: tuple[str, ...], notes: list[str]
) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score

    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), average="macro", zero_division=0
    )
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(p),
        "recall_macro": float(r),
        "f1_macro": float(f),
    }
    if scores is None:
        return out
    present = set(y_true)
    if len(present) < 2:
        notes.append("ROC AUC not computed: the true labels hold one class")
    else:
        try:
            if len(labels) == 2:
                truth = [y == labels[1] for y in y_true]
                out["roc_auc"] = float(roc_auc_score(truth, scores[:, 1]))
            else:
                out["roc_auc"] = float(roc_auc_score(y_true, scores, multi_class="ovr", labels=list(labels)))
        except ValueError as e:  # a class predicted but never true: one-vs-rest has no curve for it
            notes.append(f"ROC AUC not computed: {e}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scores not summing to exactly 1 are renormalised; fine here
        out["log_loss"] = float(log_loss(y_true, scores, labels=list(labels)))
    return out


def regression(
    y_true: Sequence[float], y_pred: Sequence[float], slices: Mapping[str, Sequence[str]] | None = None
) -> Measurement:
    metrics = _regression_metrics(y_true, y_pred)
    results: list[SliceResult] = []
    for column, values in (slices or {}).items():
        for value in ordered_labels(values):
            idx = [i for i, v in enumerate(values) if v == value]
            part = _regression_metrics([y_true[i] for i in idx], [y_pred[i] for i in idx])
            results.append(SliceResult(column, value, len(idx), part))
    notes = ("fairness gaps are for classification",) if slices else ()
    return Measurement("regression", len(y_true), metrics, slices=tuple(results), notes=notes)


def _regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    out = {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
    }
    if len(y_true) >= 2:
        out["r2"] = float(r2_score(y_true, y_pred))
    return out


def _slices(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    scores: Any,
    labels: tuple[str, ...],
    slices: Mapping[str, Sequence[str]],
) -> tuple[SliceResult, ...]:
    results: list[SliceResult] = []
    for column, values in slices.items():
        for value in ordered_labels(values):
            idx = [i for i, v in enumerate(values) if v == value]
            part_scores = scores[idx] if scores is not None else None
            ignored: list[str] = []  # a slice too small for ROC AUC just lacks it
            metrics = _classification_metrics(
                [y_true[i] for i in idx], [y_pred[i] for i in idx], part_scores, labels, ignored
            )
            results.append(SliceResult(column, value, len(idx), metrics))
    return tuple(results)


def _fairness(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: tuple[str, ...],
    slices: Mapping[str, Sequence[str]],
    positive: str | None,
    notes: list[str],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Demographic parity and equalized odds differences per slice column (fairlearn), binary outcomes:
    the positive class against the rest. The gateable value is the largest gap over the columns."""
    if not slices:
        return {}, {}
    if positive is None:
        if len(labels) != 2:
            notes.append(
                f"fairness gaps not computed: {len(labels)} classes; name the positive one in "
                "tests.evaluate.positive"
            )
            return {}, {}
        positive = labels[1]
    positive = label(positive)
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    truth = [int(y == positive) for y in y_true]
    pred = [int(y == positive) for y in y_pred]
    by_column: dict[str, dict[str, float]] = {}
    for column, values in slices.items():
        by_column[column] = {
            "demographic_parity_difference": float(
                demographic_parity_difference(truth, pred, sensitive_features=list(values))
            ),
            "equalized_odds_difference": float(
                equalized_odds_difference(truth, pred, sensitive_features=list(values))
            ),
        }
    worst = {m: max(c[m] for c in by_column.values()) for m in FAIRNESS_METRICS}
    return worst, by_column
