"""record/where.py: the typed `--where` language shared by ls, the portal's catalog and runs (pure)."""

from __future__ import annotations

import pytest

from modelpack.errors import UsageError
from modelpack.record import where as q

RUN = q.Subject(
    params={
        "alpha": 0.0001,
        "layers": "[64,32]",
        "solver": "adam",
        "max_iter": 200,
        "early": True,
        "t": "1e-4",
    },
    metrics={"f1": 0.91, "loss": 0.2},
    measured_on={"f1": "iris"},
    tags=frozenset({"sweep", "baseline"}),
    datasets=(q.DatasetFact("iris", "sha256:" + "a" * 64, "sha256:" + "b" * 64, "reg/data/iris:3.0.0"),),
)


def ok(text: str, subject: q.Subject = RUN, metric: str | None = None) -> bool:
    condition, _ = q.resolve(q.parse(text), [subject])
    return q.matches(condition, subject, metric)


def test_numbers_are_compared_by_value_not_text() -> None:
    assert ok("param=alpha=1e-4") and ok("param.alpha=1e-4") and ok("param.alpha==0.0001")
    assert ok("param.alpha<0.001") and not ok("param.alpha>0.001") and ok("param.alpha>=1E-4")
    assert ok("param.max_iter=200.0") and ok("param.max_iter!=100")
    assert ok("param.t=0.0001")  # a param recorded as the text "1e-4" (PyYAML's reading) is the number


def test_lists_bools_and_text() -> None:
    assert ok("param.layers=[64,32]") and ok("param.layers=[64, 32.0]") and not ok("param.layers=[64]")
    assert ok("param.early=true") and not ok("param.early=1")  # a boolean is not the number 1
    assert ok("param.solver=adam") and ok("param.solver='adam'") and not ok("param.solver=sgd")
    assert not ok("param.solver=[adam]")
    assert q.value("'0.1'") == "0.1" and q.value("0.1") == 0.1 and q.value("3") == 3


def test_ordering_is_for_numbers_only() -> None:
    with pytest.raises(UsageError, match="compares numbers"):
        q.parse("param.solver<adam")
    assert not ok("param.solver<1")  # text is never ordered against a number


def test_metrics_tags_and_gates() -> None:
    assert ok("f1>=0.9") and ok("metric.f1>0.9") and not ok("f1>0.95") and ok("loss<=0.2")
    assert ok("tag=sweep") and not ok("tag=prod")
    with pytest.raises(UsageError, match="compares with a number"):
        q.parse("metric.f1=high")


def test_a_bare_name_that_is_a_param_says_so() -> None:
    condition, note = q.resolve(q.parse("alpha<0.001"), [RUN])
    assert condition.kind == "param" and q.matches(condition, RUN)
    assert note is not None and "'alpha' is a param, not a metric" in note
    metric, none = q.resolve(q.parse("f1>=0.9"), [RUN])
    assert metric.kind == "metric" and none is None


def test_unknown_names_are_errors_with_a_suggestion() -> None:
    for text, hint in (("alhpa<0.1", "alpha"), ("metric.loos>0", "loss"), ("param.solvr=adam", "solver")):
        with pytest.raises(UsageError) as e:
            q.resolve(q.parse(text), [RUN])
        assert e.value.hint == f"did you mean {hint!r}?"
    assert q.resolve(q.parse("latency_p95_ms<5"), [RUN], ["latency_p95_ms"])[0].kind == "metric"


def test_datasets_by_name_hash_and_published_digest() -> None:
    assert ok("dataset=iris") and ok("dataset=iris", metric="f1") and not ok("dataset=wine")
    wine = q.Subject(metrics={"f1": 0.5}, measured_on={"f1": "wine"}, datasets=RUN.datasets)
    assert not ok("dataset=iris", wine, metric="f1")  # f1 was measured on wine, whatever else iris served
    assert ok("dataset=sha256:aaaaaaaa") and ok("dataset=sha256:bbbbbbbb") and not ok("dataset=sha256:aaa")
    published = q.parse("dataset=reg/data/iris:3.0.0")
    assert published.published
    with pytest.raises(ValueError, match="resolved"):
        q.matches(published, RUN)
    assert q.matches(published.resolved("sha256:" + "b" * 64), RUN)
    assert not q.matches(published.resolved("sha256:" + "c" * 64), RUN)


def test_a_name_spanning_dataset_versions_is_said() -> None:
    v2 = q.Subject(datasets=(q.DatasetFact("iris", "sha256:" + "2" * 64),))
    v3 = q.Subject(datasets=(q.DatasetFact("iris", "sha256:" + "3" * 64),))
    by_name = q.parse("dataset=iris")
    assert q.spanned(by_name, [v2, v3]) == ("sha256:" + "2" * 64, "sha256:" + "3" * 64)
    note = q.note_spanned(by_name, [v2, v3])
    assert note is not None and "2 dataset versions" in note and "222222222222" in note
    assert q.note_spanned(by_name, [v2, v2]) is None
    assert q.note_spanned(q.parse("dataset=sha256:22222222"), [v2, v3]) is None


def test_parse_errors_name_the_shapes() -> None:
    for bad in ("dataset", "colour", "param=lr", "dataset=", "tag=", "x<"):
        with pytest.raises(UsageError):
            q.parse(bad)
    assert q.parse("param=alpha=1e-4") == q.parse("param=alpha=1e-4")  # frozen, comparable
