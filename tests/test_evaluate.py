"""`modelpack test` measuring the served model: a dataset version pushed to the real registry, every row
through a running runtime (the local one here: fast; tests/test_evaluate_engine.py runs the image), the
metrics checked against scikit-learn and fairlearn computed here on predictions made independently."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from fixtures.registry import RegistryProcess
from sklearn import metrics as skm
from support.clirun import run_cli
from support.evaluation import COUNT_FILE, EPOCH, EXAMPLES, biased_predict, make_dataset, make_project

from modelpack import api
from modelpack.errors import InputError
from modelpack.evidence.attestations import attach_envelope
from modelpack.evidence.evidence import REPORT_TYPE
from modelpack.oci.model import Descriptor
from modelpack.packfile import load_packfile
from modelpack.record.record import TestPlan
from modelpack.targets import Targets
from modelpack.testing.report import statement
from modelpack.testing.testrun import TestOptions
from modelpack.trust.intoto import test_result_statement


@pytest.fixture
def published(registry: RegistryProcess, repo: str, tmp_path: Path) -> tuple[str, list[dict[str, str]]]:
    rows = make_dataset(tmp_path / "data" / "eval.csv")
    ref = f"{registry.host}/{repo}-data:1.0.0"
    with Targets() as targets:
        api.dataset_push(targets, tmp_path / "data", ref, label="label", environ=EPOCH)
    return ref, rows


def _build(tmp_path: Path, project: Path) -> tuple[Targets, str]:
    targets = Targets(store_path=tmp_path / "store")
    built = api.build(targets, project, environ=EPOCH)
    return targets, built.tag


def test_every_metric_and_gap_matches_sklearn_and_fairlearn_on_the_same_predictions(
    published: tuple[str, list[dict[str, str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, rows = published
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    project = make_project(
        tmp_path / "p",
        ref,
        recorded="accuracy: 0.99, f1_macro: 0.99",
        gates="measured.accuracy >= 0.5, gap.f1_macro <= 0.02, fairness.demographic_parity_difference <= 1",
    )
    targets, tag = _build(tmp_path, project)
    with targets:
        outcome = api.test(targets, tag, TestOptions(runtime="local", requests=2, attach=False))
    report = outcome.report
    assert report.runtime == "local" and report.evaluation is not None
    e = report.evaluation
    assert e.dataset.name.endswith("-data") and e.dataset.version == "1.0.0"
    assert e.dataset.digest.startswith("sha256:") and e.requests == -(-len(rows) // 32)

    # the same predictions, made here without the server, measured by scikit-learn and fairlearn
    truth = [r["label"] for r in rows]
    made = [biased_predict(float(r["score"]), int(r["sex"])) for r in rows]
    pred = [str(m[0]) for m in made]
    proba = np.array([[1 - m[1], m[1]] for m in made])
    m = e.measurement.metrics
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(truth, pred))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(truth, pred, average="macro"))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(truth, pred, average="macro"))
    assert m["recall_macro"] == pytest.approx(skm.recall_score(truth, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score([t == "1" for t in truth], proba[:, 1]), abs=1e-6)
    assert m["log_loss"] == pytest.approx(skm.log_loss(truth, proba, labels=["0", "1"]), abs=1e-5)
    assert [list(r) for r in e.measurement.confusion] == skm.confusion_matrix(truth, pred).tolist()
    per_class = skm.f1_score(truth, pred, average=None, labels=["0", "1"])
    assert [e.measurement.per_class[c]["f1"] for c in ("0", "1")] == pytest.approx(list(per_class))

    # per slice: every metric on that slice's rows
    women = [i for i, r in enumerate(rows) if r["sex"] == "1"]
    (s1,) = [s for s in e.measurement.slices if (s.column, s.value) == ("sex", "1")]
    assert s1.rows == len(women)
    sub_t, sub_p = [truth[i] for i in women], [pred[i] for i in women]
    assert s1.metrics["accuracy"] == pytest.approx(skm.accuracy_score(sub_t, sub_p))
    assert s1.metrics["f1_macro"] == pytest.approx(skm.f1_score(sub_t, sub_p, average="macro"))
    assert {s.value for s in e.measurement.slices if s.column == "age_band"} == {"18-30", "31-50", "51+"}

    # fairness: the boost for sex == 1 shows as a gap fairlearn measures the same
    sex = [r["sex"] for r in rows]
    t01, p01 = [int(t) for t in truth], [int(p) for p in pred]
    dpd = demographic_parity_difference(t01, p01, sensitive_features=sex)
    eod = equalized_odds_difference(t01, p01, sensitive_features=sex)
    assert dpd > 0.15  # the constructed bias is visible
    by = e.measurement.fairness_by_column["sex"]
    assert by["demographic_parity_difference"] == pytest.approx(dpd)
    assert by["equalized_odds_difference"] == pytest.approx(eod)
    assert e.measurement.fairness["demographic_parity_difference"] >= dpd  # worst over sex and age_band

    # the record claims 0.99: the served model is worse, flagged and failing the gap gate
    (flag,) = [f for f in e.flagged() if "f1_macro" in f]
    assert flag.startswith("served f1_macro ") and "vs recorded 0.990 on" in flag and "1.0.0" in flag
    gates = {g.gate: g for g in report.gates}
    assert gates["measured.accuracy >= 0.5"].passed
    assert not gates["gap.f1_macro <= 0.02"].passed
    assert gates["gap.f1_macro <= 0.02"].value == pytest.approx(0.99 - m["f1_macro"])
    assert not report.passed and "gate gap.f1_macro <= 0.02" in report.failures

    # the report (version 2) carries it all and names the runtime
    body = report.to_json()
    assert body["reportVersion"] == 2 and body["runtime"] == "local"
    assert body["evaluation"]["dataset"]["digest"] == e.dataset.digest
    assert body["evaluation"]["confusionMatrix"] == skm.confusion_matrix(truth, pred).tolist()
    predicate = statement(report)["predicate"]  # the in-toto test result: the dataset was configuration
    assert predicate["modelpack"]["reportVersion"] == 2 and predicate["result"] == "FAILED"
    assert any(c["digest"] == {"sha256": e.dataset.digest[7:]} for c in predicate["configuration"])
    ann = report.annotations()
    assert ann["dev.modelpack.test.evaluation.dataset"] == e.dataset.digest
    assert float(ann["dev.modelpack.test.metric.measured.accuracy"]) == pytest.approx(m["accuracy"], rel=1e-5)


def test_load_counts_match_what_the_runtime_served(
    published: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    ref, _ = published
    project = make_project(
        tmp_path / "p", ref, gates="load.error_rate <= 0, load.p99_ms <= 100000",
        extra="  load: {connections: 2, duration: 30s}\n",
    )  # fmt: skip
    targets, tag = _build(tmp_path, project)
    targets.close()
    # --load overrides the record's 30 s; --json is checked against the documented shape
    cli = run_cli(
        "test", tag, "--runtime", "local", "--no-attach", "--load", "4x1s", "--json",
        "--store", str(tmp_path / "store"), env={"TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    body = json.loads(cli.stdout)
    load = body["load"]
    assert load["connections"] == 4 and load["errors"] == 0 and load["durationSeconds"] < 10
    assert load["requests"] > 4 and load["throughput_rps"] > 0 and load["p50_ms"] <= load["p99_ms"]
    assert load["peak_memory_mb"] > 10  # the runtime process's VmHWM
    served = (tmp_path / COUNT_FILE).read_text().count("\n")
    # the handler counted every request it served: the evaluation's batches and the load's requests (no
    # golden case, so no latency requests)
    assert served == body["evaluation"]["requests"] + load["requests"]
    assert all(g["passed"] for g in body["gates"]), body["gates"]
    assert "load: 4 connections for 1 s" in cli.stderr  # progress on stderr, data on stdout


def test_a_column_the_dataset_lacks_is_one_line_naming_it(
    published: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    ref, _ = published
    project = make_project(tmp_path / "p", ref)
    packfile = project / "modelpack.yaml"
    packfile.write_text(packfile.read_text().replace("features: [score, sex]", "features: [score, gender]"))
    targets, tag = _build(tmp_path, project)
    targets.close()
    cli = run_cli("test", tag, "--runtime", "local", "--no-attach", "--store", str(tmp_path / "store"))
    assert cli.returncode == 2, cli.stderr
    errors = [line for line in cli.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no column 'gender'" in errors[0] and "Traceback" not in cli.stderr
    assert "starting the local runtime" not in cli.stderr  # refused before the runtime started

    # --evaluate on a release that declares no evaluation: nothing says which columns are features
    text = packfile.read_text()
    packfile.write_text(text[: text.index("  evaluate:")].replace("tests:\n  gates: []\n", "") + "\n")
    with Targets(store_path=tmp_path / "store") as t:
        api.build(t, project, version="0.9.0", environ=EPOCH)
    cli = run_cli("test", "biased:0.9.0", "--evaluate", ref, "--runtime", "local", "--no-attach",
                  "--store", str(tmp_path / "store"))  # fmt: skip
    assert cli.returncode == 2 and "declares no tests.evaluate" in cli.stderr, cli.stderr


def test_evaluate_option_without_a_plan_and_unknown_gate_names(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "127.0.0.1:1/d/x:1.0.0", gates="measured.f1_macr >= 0.9")
    with pytest.raises(InputError) as caught:
        api.build(Targets(store_path=tmp_path / "store"), project, environ=EPOCH)
    assert "measured.f1_macro" in (caught.value.hint or "")  # did you mean
    # a record written before evaluation reads as no plan; one with a plan round-trips
    assert TestPlan.from_json({"cases": None, "gates": []}).evaluate is None
    pf = load_packfile(project / "modelpack.yaml")
    assert pf.tests.evaluate is not None
    plan = TestPlan(None, (), None, pf.tests.evaluate)
    assert TestPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_diff_inspect_and_policy_read_the_measured_numbers(
    published: tuple[str, list[dict[str, str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, _ = published
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    other = ref.replace(":1.0.0", ":2.0.0")
    make_dataset(tmp_path / "data2" / "eval.csv", rows=120)  # another version: other rows, other digest
    with Targets() as targets:
        api.dataset_push(targets, tmp_path / "data2", other, label="label", environ=EPOCH)
    project = make_project(tmp_path / "p", ref, gates="measured.accuracy >= 0.5")
    store = tmp_path / "store"
    with Targets(store_path=store) as targets:
        api.build(targets, project, environ=EPOCH)
        api.build(targets, project, version="2.0.0", environ=EPOCH)
        one = api.test(targets, "biased:1.0.0", TestOptions(runtime="local", requests=1))
        two = api.test(targets, "biased:2.0.0", TestOptions(runtime="local", requests=1))
        assert one.attached is not None and two.attached is not None
        measured = api.diff(targets, "biased:1.0.0", "biased:2.0.0").measured
        assert measured is not None and measured.comparable and measured.why_not == ""
        (acc,) = [m for m in measured.metrics if m.name == "measured.accuracy"]
        assert two.report.evaluation is not None
        served_two = two.report.evaluation.measurement.metrics["accuracy"]
        assert acc.old == acc.new == pytest.approx(served_two, rel=1e-5)
        (newest, *_) = api.inspect(targets, "biased:2.0.0").reports
        assert newest.evaluation_dataset == two.report.evaluation.dataset.digest
        assert dict(newest.measured)["measured.accuracy"] == pytest.approx(acc.new)

        # ls sorts and filters on the served number, read from the reports' annotations
        listed = api.ls(targets, "biased", sort="measured.accuracy", where=["measured.accuracy>=0.5"])
        assert set(listed.tags) == {"1.0.0", "2.0.0"}

        # v2 measured again on dataset 2.0.0: its newest evaluation no longer compares with v1's
        again = api.test(targets, "biased:2.0.0", TestOptions(runtime="local", requests=1, evaluate=other))
        assert again.report.evaluation is not None and again.report.evaluation.dataset.version == "2.0.0"
        measured = api.diff(targets, "biased:1.0.0", "biased:2.0.0").measured
        assert measured is not None and not measured.comparable and measured.metrics == ()
        assert measured.why_not.startswith("not comparable: measured on different dataset versions")
    cli = run_cli("diff", "biased:1.0.0", "biased:2.0.0", "--store", str(store))
    assert cli.returncode == 0 and "MEASURED: not comparable" in cli.stdout, cli.stderr
    cli = run_cli("diff", "biased:1.0.0", "biased:2.0.0", "--store", str(store), "--json")
    assert json.loads(cli.stdout)["measured"]["comparable"] is False

    # a policy holds the served number to its own minimum, whatever gate the release declares
    from modelpack.environment.policy import parse_requirements

    assert one.report.evaluation is not None
    served = one.report.evaluation.measurement.metrics["accuracy"]
    (lax,) = parse_requirements("test:gate=measured.accuracy>=0.5")
    above = round(served + 0.01, 4)
    (strict,) = parse_requirements(f"test:gate=measured.accuracy>={above}")
    (named,) = parse_requirements("test:gate=measured.f1_macro")
    body = one.report.to_json()
    assert lax.shortfalls(body) == []
    assert strict.shortfalls(body) == [
        f"measured.accuracy is {served:g} in the report; the policy requires >= {above:g}"
    ]
    assert named.shortfalls(body) == ["no passing gate on measured.f1_macro"]


def test_the_portal_version_page_shows_the_evaluation(
    published: tuple[str, list[dict[str, str]]],
    registry: RegistryProcess,
    repo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref, rows = published
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    project = make_project(
        tmp_path / "p", ref, recorded="accuracy: 0.99", extra="  load: {connections: 2, duration: 0.5s}\n"
    )
    with Targets(store_path=tmp_path / "store") as targets:
        built = api.build(targets, project, environ=EPOCH)
        pushed = api.push(targets, f"{registry.host}/{repo}", source=built.tag).destination
        outcome = api.test(targets, pushed, TestOptions(runtime="local", requests=1))
    assert outcome.attached is not None and outcome.report.evaluation is not None
    # a report written before evaluation (version 1: no evaluation, no load) still reads beside it
    old = dataclasses.replace(outcome.report, evaluation=None, load=None, finished="2000-01-01T00:00:00Z")
    body = {**old.to_json(), "reportVersion": 1}
    del body["evaluation"], body["load"]
    r = old.release
    with Targets() as targets:
        target = targets.open(pushed).target
        attach_envelope(target, Descriptor(r.media_type, r.digest, r.size), REPORT_TYPE,
                        test_result_statement(body, r.digest, f"{r.name}:{r.version}"), None,
                        old.annotations())  # fmt: skip
    site = tmp_path / "site"
    cli = run_cli("ui", "--export", str(site), f"{registry.host}/{repo}")
    assert cli.returncode == 0, cli.stderr
    (page,) = site.glob("r/*/v/1.0.0.html")
    html = page.read_text()
    m = outcome.report.evaluation.measurement
    assert f"{rows.__len__()} rows" in html and "local runtime" in html
    assert "confusion matrix" in html and all(f"<td>{n}</td>" in html for row in m.confusion for n in row)
    assert "sex=1" in html and "age_band=51+" in html  # the per-slice table
    assert "demographic_parity_difference" in html and "gap: served accuracy" in html
    assert 'class="load"' in html
    assert html.count('class="report"') == 2 and html.count('class="evaluation"') == 1


def test_regression_on_the_custom_handler_example(
    registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    rnd = random.Random(11)
    rows = []
    for _ in range(120):
        rooms, area, age = rnd.randint(1, 6), rnd.randint(20, 200), rnd.randint(0, 80)
        rows.append(
            (rooms, area, age, round(12.5 * rooms + 2.25 * area - 1.5 * age + 40 + rnd.gauss(0, 4), 3))
        )
    data = tmp_path / "houses"
    data.mkdir()
    lines = ["rooms,area_m2,age_years,price", *(",".join(map(str, r)) for r in rows)]
    (data / "houses.csv").write_text("\n".join(lines) + "\n")
    ref = f"{registry.host}/{repo}-houses:1.0.0"
    with Targets() as targets:
        api.dataset_push(targets, data, ref, environ=EPOCH)
    project = tmp_path / "house"
    shutil.copytree(EXAMPLES / "custom-handler", project)
    packfile = project / "modelpack.yaml"
    evaluate = textwrap.indent(
        textwrap.dedent(f"""\
        evaluate:
          dataset: {ref}
          features: [rooms, area_m2, age_years]
          target: price
          task: regression
          input: features
          prediction: price
        """),
        "  ",
    )
    text = packfile.read_text()
    assert "    - latency_p95_ms <= 20\n" in text
    packfile.write_text(
        text.replace("    - latency_p95_ms <= 20\n", "    - measured.rmse <= 10\n" + evaluate)
    )
    with Targets(store_path=tmp_path / "store") as targets:
        api.build(targets, project, environ=EPOCH)
        outcome = api.test(
            targets, "house-prices:0.1.0", TestOptions(runtime="local", requests=2, attach=False)
        )
    e = outcome.report.evaluation
    assert e is not None and e.measurement.task == "regression" and e.measurement.rows == 120
    truth = np.array([r[3] for r in rows])
    pred = np.array([np.float32(12.5 * r[0] + 2.25 * r[1] - 1.5 * r[2] + 40) for r in rows], dtype=np.float64)
    err = pred - truth
    assert e.measurement.metrics["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
    assert e.measurement.metrics["rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-5)
    r2 = 1 - (err**2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert e.measurement.metrics["r2"] == pytest.approx(r2, rel=1e-5)
    assert outcome.report.passed, outcome.report.failures
