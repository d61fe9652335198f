"""measure.py on predictions made here: regression metrics against their textbook formulas, multi-class
classification (one-vs-rest ROC AUC, log loss, per class) against scikit-learn, and what it declines."""

from __future__ import annotations

import math
import random

import pytest
from sklearn import metrics as skm

from modelpack.testing.evaluate import claims
from modelpack.testing.measure import classification, label, regression


def test_regression_metrics_match_their_formulas() -> None:
    rnd = random.Random(3)
    truth = [rnd.uniform(0, 100) for _ in range(200)]
    pred = [t + rnd.gauss(0, 5) for t in truth]
    m = regression(truth, pred, {"band": ["a" if t < 50 else "b" for t in truth]})
    errors = [p - t for p, t in zip(pred, truth, strict=True)]
    mean = sum(truth) / len(truth)
    assert m.metrics["mae"] == pytest.approx(sum(abs(e) for e in errors) / len(errors))
    assert m.metrics["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / len(errors)))
    r2 = 1 - sum(e * e for e in errors) / sum((t - mean) ** 2 for t in truth)
    assert m.metrics["r2"] == pytest.approx(r2)
    assert [s.value for s in m.slices] == ["a", "b"] and sum(s.rows for s in m.slices) == 200
    assert m.fairness == {} and m.notes == ("fairness gaps are for classification",)


def test_three_classes_with_scores_match_sklearn() -> None:
    rnd = random.Random(5)
    truth = [rnd.choice([0, 1, 2]) for _ in range(150)]
    scores = []
    for t in truth:
        raw = [rnd.random() + (1.5 if i == t else 0) for i in range(3)]
        scores.append([r / sum(raw) for r in raw])
    pred = [max(range(3), key=s.__getitem__) for s in scores]
    m = classification([label(t) for t in truth], [label(p) for p in pred], scores, {"g": ["x"] * 150})
    assert m.labels == ("0", "1", "2")
    assert m.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, scores, multi_class="ovr"))
    assert m.metrics["log_loss"] == pytest.approx(skm.log_loss(truth, scores))
    assert m.metrics["f1_macro"] == pytest.approx(skm.f1_score(truth, pred, average="macro"))
    recall = skm.recall_score(truth, pred, average=None)
    assert [m.per_class[c]["recall"] for c in m.labels] == pytest.approx(list(recall))
    assert [list(r) for r in m.confusion] == skm.confusion_matrix(truth, pred).tolist()
    # three classes and no positive named: no fairness number is made up
    assert m.fairness == {} and any("tests.evaluate.positive" in n for n in m.notes)


def test_labels_scores_and_claims() -> None:
    assert label("2") == label(2) == label(2.0) == label(" 2.0 ") == "2" and label("yes") == "yes"
    m = classification(["a", "b", "a"], ["a", "a", "a"], [[0.8, 0.1, 0.1]] * 3)  # 3 columns, 2 classes
    assert "roc_auc" not in m.metrics and "log_loss" not in m.metrics
    assert m.notes == ("scores have 3 columns for 2 classes: ROC AUC and log loss not computed",)
    (gap,) = claims({"f1_macro": 0.97}, {"f1_macro": 0.91}, 0.02)
    assert gap.flagged and gap.gap == pytest.approx(0.06)
    (better,) = claims({"rmse": 3.0}, {"rmse": 2.0}, 0.0)  # served better than recorded: no gap
    assert not better.flagged and better.gap == pytest.approx(-1.0)
