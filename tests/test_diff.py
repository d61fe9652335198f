"""modelpack diff: a pure comparison of two records, and the command on releases in a registry."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from support.clirun import run_main as run_cli  # in process: the console script is proven in test_cli
from support.release_fixtures import Pushed, pushed  # noqa: F401  (the fixture)

from modelpack.record.git import GitInfo
from modelpack.record.record import DatasetEntry, FileEntry, LockSummary, Metric, Record
from modelpack.release.diff import diff_records, flatten

H = {c: f"sha256:{c * 64}" for c in "abcdef"}


def record(version: str, **changes: Any) -> Record:
    base: dict[str, Any] = {
        "name": "iris",
        "version": version,
        "created": "2024-01-01T00:00:00Z",
        "files": (FileEntry("models/model.onnx", H["a"], 10), FileEntry("code/handler.py", H["b"], 5)),
        "datasets": (DatasetEntry("train", H["c"], 100, 1), DatasetEntry("test", H["d"], 50, 1)),
        "metrics": {"accuracy": Metric(0.9, "test"), "latency_ms": Metric(20.0), "f1": Metric(0.8, "test")},
        "params": {"lr": 0.1, "opt": {"name": "adam", "beta": 0.9}},
        "git": GitInfo("1" * 40, None, None, False),
        "lock": LockSummary(
            "code/req.lock", H["e"], "requirements", "3.11", {"numpy": "1.26.4", "onnx": "1.16.0"}
        ),
    }
    base.update(changes)
    return Record(**base)


def test_identical_records_are_unchanged() -> None:
    d = diff_records(record("1"), record("1"))
    assert d.unchanged
    assert all(m.direction == "same" and m.delta == 0 for m in d.metrics)
    assert not (d.datasets or d.files or d.packages or d.params) and d.git is None


def test_metric_deltas_have_direction_and_absolute_and_relative_change() -> None:
    new = record(
        "2",
        metrics={"accuracy": Metric(0.99, "test"), "latency_ms": Metric(15.0), "auc": Metric(0.7, "test")},
    )
    d = diff_records(record("1"), new)
    by = {m.name: m for m in d.metrics}
    assert set(by) == {"accuracy", "latency_ms", "f1", "auc"}
    acc = by["accuracy"]
    assert acc.direction == "up" and acc.delta == pytest.approx(0.09) and acc.relative == pytest.approx(0.1)
    lat = by["latency_ms"]
    assert lat.direction == "down" and lat.delta == -5.0 and lat.relative == pytest.approx(-0.25)
    assert by["f1"].status == "removed" and by["f1"].new is None and by["f1"].direction is None
    assert by["auc"].status == "added" and by["auc"].old is None
    assert not d.unchanged
    js = d.to_json()
    assert {m["name"]: m["direction"] for m in js["metrics"]}["accuracy"] == "up"


def test_relative_change_from_zero_is_none_and_dataset_switch_is_flagged() -> None:
    old = record("1", metrics={"errors": Metric(0.0, "test"), "accuracy": Metric(0.9, "test")})
    new = record("2", metrics={"errors": Metric(3.0, "test"), "accuracy": Metric(0.9, "test-v3")})
    by = {m.name: m for m in diff_records(old, new).metrics}
    assert by["errors"].relative is None and by["errors"].delta == 3.0 and by["errors"].direction == "up"
    assert by["accuracy"].direction == "same" and by["accuracy"].dataset_changed


def test_changed_hashes_packages_params_and_commit() -> None:
    new = record(
        "2",
        files=(FileEntry("models/model.onnx", H["f"], 11), FileEntry("code/extra.py", H["b"], 5)),
        datasets=(DatasetEntry("train", H["c"], 100, 1), DatasetEntry("test", H["a"], 50, 1)),
        params={"lr": 0.01, "opt": {"name": "adam", "beta": 0.95}, "epochs": 3},
        git=GitInfo("2" * 40, None, None, False),
        lock=LockSummary(
            "code/req.lock", H["f"], "requirements", "3.12", {"numpy": "2.0.0", "scipy": "1.13.0"}
        ),
    )
    d = diff_records(record("1"), new)
    assert [(c.key, c.status, c.old, c.new) for c in d.datasets] == [("test", "changed", H["d"], H["a"])]
    assert [(c.key, c.status) for c in d.files] == [
        ("code/extra.py", "added"),
        ("code/handler.py", "removed"),
        ("models/model.onnx", "changed"),
    ]
    assert [c.key for c in d.model_files] == ["models/model.onnx"]
    assert [(c.key, c.status, c.old, c.new) for c in d.packages] == [
        ("numpy", "changed", "1.26.4", "2.0.0"),
        ("onnx", "removed", "1.16.0", None),
        ("scipy", "added", None, "1.13.0"),
    ]
    assert {c.key: (c.old, c.new) for c in d.params} == {
        "epochs": (None, 3),
        "lr": (0.1, 0.01),
        "opt.beta": (0.9, 0.95),
    }
    assert d.git is not None and (d.git.old, d.git.new) == ("1" * 40, "2" * 40)
    assert d.python is not None and (d.python.old, d.python.new) == ("3.11", "3.12")
    json.dumps(d.to_json())  # the --json output is plain JSON


def test_records_without_lock_or_git() -> None:
    d = diff_records(record("1", lock=None, git=None), record("2"))
    assert {c.key for c in d.packages} == {"numpy", "onnx"} and all(c.status == "added" for c in d.packages)
    assert d.git is not None and d.git.old is None


def test_flatten_nested_params() -> None:
    assert flatten({"a": {"b": {"c": 1}}, "d": [1, 2], "e": {}}) == {"a.b.c": 1, "d": [1, 2], "e": {}}


def test_another_version_of_one_dataset_name_is_not_comparable() -> None:
    """V2 and V3 of a dataset under one name: the delta compares unlike things, so no up, no regression."""
    v2 = record("1", datasets=(DatasetEntry("test", H["d"], 50, 1),))
    v3 = record(
        "2", datasets=(DatasetEntry("test", H["e"], 50, 1),), metrics={"accuracy": Metric(0.5, "test")}
    )
    by = {m.name: m for m in diff_records(v2, v3, {"accuracy": "higher"}).metrics}
    acc = by["accuracy"]
    assert acc.dataset_changed and not acc.comparable and not acc.regressed and not acc.improved
    assert acc.to_json()["oldDatasetVersion"] == H["d"] and acc.to_json()["newDatasetVersion"] == H["e"]
    same = {m.name: m for m in diff_records(v2, record("3", metrics={"accuracy": Metric(0.5, "test")}),
                                            {"accuracy": "higher"}).metrics}  # fmt: skip
    assert same["accuracy"].comparable and same["accuracy"].regressed


def test_diff_command_between_registry_versions(pushed: Pushed) -> None:  # noqa: F811
    result = run_cli("diff", pushed.ref("1.0.0"), "1.1.0", "--json")  # B as a bare tag of A's repository
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    assert d["b"] == pushed.ref("1.1.0")
    acc = {m["name"]: m for m in d["metrics"]}["accuracy"]
    assert acc["direction"] == "up" and acc["delta"] == pytest.approx(0.05)
    assert acc["relative"] == pytest.approx(0.05 / 0.9)
    assert [f["key"] for f in d["files"]] == ["models/model.onnx"]  # code and docs did not change
    assert {p["key"]: (p["old"], p["new"]) for p in d["params"]} == {"lr": (0.1, 0.01)}
    assert d["packages"] == [] and d["git"] is None


def test_diff_command_shows_dataset_switch_for_people(pushed: Pushed) -> None:  # noqa: F811
    result = run_cli("diff", pushed.ref("1.1.0"), pushed.ref("1.2.0"), "--exit-code")
    assert result.returncode == 0, result.stderr  # 0.95 -> 0.93 on another dataset: no regression
    out = result.stdout
    row = next(line for line in out.splitlines() if line.startswith("accuracy"))
    assert "-0.02" in row and "not comparable" in row and "REGRESSED" not in row and " down " not in row
    assert re.search(r"dataset iris-test@[0-9a-f]{12} -> iris-test-v3@[0-9a-f]{12}", row), row
    assert "models/model.onnx" in out and "changed" in out
    doc = json.loads(run_cli("diff", pushed.ref("1.1.0"), "1.2.0", "--json").stdout)
    acc = {m["name"]: m for m in doc["metrics"]}["accuracy"]
    assert acc["comparable"] is False and acc["regressed"] is False and doc["regressions"] == []


def test_diff_of_local_and_remote_same_release_is_empty(pushed: Pushed) -> None:  # noqa: F811
    result = run_cli("diff", "iris-onnx:1.3.0", pushed.ref("1.3.0"), "--store", str(pushed.store.root))
    assert result.returncode == 0, result.stderr
    assert "no differences" in result.stdout


def test_diff_of_local_tags_with_bare_tag_shorthand(pushed: Pushed) -> None:  # noqa: F811
    result = run_cli("diff", "iris-onnx:1.0.0", "1.3.0", "--store", str(pushed.store.root), "--json")
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    assert (d["a"], d["b"]) == ("iris-onnx:1.0.0", "iris-onnx:1.3.0")
    added = [x["key"] for x in d["datasets"] if x["status"] == "added"]
    assert added == ["iris-test-v3"]


def test_exit_code_fails_ci_on_a_regression_the_gates_define(pushed: Pushed) -> None:  # noqa: F811
    worse = run_cli("diff", pushed.ref("1.3.0"), "1.2.0", "--exit-code")  # accuracy 0.97 -> 0.93, both on v3
    assert worse.returncode == 1, worse.stderr
    assert "REGRESSED" in worse.stdout and "version: iris-onnx 1.3.0 -> iris-onnx 1.2.0" in worse.stdout
    doc = json.loads(run_cli("diff", pushed.ref("1.3.0"), "1.2.0", "--json").stdout)
    assert "accuracy" in doc["regressions"] and doc["versionChanged"] is True
    better = run_cli("diff", pushed.ref("1.2.0"), "1.3.0", "--exit-code")  # 0.93 -> 0.97
    assert better.returncode == 0, better.stderr
    flipped = run_cli("diff", pushed.ref("1.2.0"), "1.3.0", "--exit-code", "--better", "accuracy=lower")
    assert flipped.returncode == 1
    bad = run_cli("diff", pushed.ref("1.2.0"), "1.3.0", "--better", "accuracy=up")
    assert bad.returncode == 2 and "METRIC=higher" in bad.stderr


def test_the_packfiles_better_applies_to_metrics_of_the_same_name() -> None:
    from modelpack.record.curves import ColumnSummary, HistorySummary

    loss = ColumnSummary("loss", 3, None, None, None, None, better="lower")
    history = HistorySummary("logs/train.csv", H["f"], 10, "step", 3, (loss,))
    old = record("1", metrics={"loss": Metric(0.2, "test")}, history=history)
    new = record("2", metrics={"loss": Metric(0.3, "test")}, history=history)
    m = diff_records(old, new).metrics[0]
    assert m.better == "lower" and m.regressed and not m.improved
    assert diff_records(record("1", metrics={"loss": Metric(0.2, "test")}), record("2", metrics={
        "loss": Metric(0.3, "test")})).metrics[0].better is None  # fmt: skip
