"""The evaluation and the load on the real serving image in the real engine, pulled by digest from the
registry a dataset version was pushed to: the same numbers the local runtime measures, the report says
the docker runtime produced them, and the container's peak memory comes from its cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from sklearn import metrics as skm
from support.evaluation import EPOCH, biased_predict, make_dataset, make_project

from modelpack import api
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.testrun import TestOptions

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_docker_runtime_measures_the_pushed_image_on_a_pushed_dataset(
    registry: RegistryProcess,
    repo: str,
    image_store: LayoutStore,
    docker_engine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    rows = make_dataset(tmp_path / "data" / "eval.csv", rows=200)
    data_ref = f"{registry.host}/{repo}-data:1.0.0"
    with Targets() as targets:
        api.dataset_push(targets, tmp_path / "data", data_ref, label="label", environ=EPOCH)
    project = make_project(
        tmp_path / "p", data_ref, recorded="accuracy: 0.5",
        gates="measured.accuracy >= 0.5, load.error_rate <= 0",
        extra="  load: {connections: 2, duration: 1s}\n",
    )  # fmt: skip
    store = Targets(store_path=image_store.root)
    with store:
        version = repo.split("/")[-1]
        built = api.build(
            store, project, image=True, base=docker_engine.base_ref, version=version, environ=EPOCH
        )
        pushed = api.push(store, f"{registry.host}/{repo}", source=built.tag).destination
    with Targets(store_path=tmp_path / "fresh") as targets:
        outcome = api.test(targets, pushed, TestOptions(runtime="docker", requests=1, attach=True))
    report = outcome.report
    assert report.runtime == "docker" and "@sha256:" in report.runtime_note
    assert report.passed, report.failures
    e = report.evaluation
    assert e is not None and e.measurement.rows == len(rows)
    truth = [r["label"] for r in rows]
    pred = [str(biased_predict(float(r["score"]), int(r["sex"]))[0]) for r in rows]
    assert e.measurement.metrics["accuracy"] == pytest.approx(skm.accuracy_score(truth, pred))
    assert e.measurement.metrics["f1_macro"] == pytest.approx(skm.f1_score(truth, pred, average="macro"))
    assert report.load is not None and report.load.errors == 0 and report.load.requests > 2
    assert report.load.peak_memory_mb is not None and report.load.peak_memory_mb > 10  # cgroup memory.peak
    assert outcome.attached is not None  # the signed-or-not in-toto statement carries it (report v2)
