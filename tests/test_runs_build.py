"""`build --run`: a release whose weights, params, metrics, curves and datasets come from a training run,
recorded by the dataset version the run read even when another version is on disk at build time."""

from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import f1_score

from modelpack import api, track
from modelpack.errors import InputError
from modelpack.portal.cache import DiskCache, Memo
from modelpack.portal.data import Source
from modelpack.portal.views import Links, Pages
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _write_csv(folder: Path, rows: int) -> None:
    X, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "species"])
        for features, label in list(zip(X, y, strict=True))[:rows]:
            w.writerow([*features, label])


def _read_csv(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(folder / "train.csv", delimiter=",", skiprows=1)
    return data[:, :4], data[:, 4].astype(int)


def test_build_from_a_run_takes_its_checkpoint_and_the_dataset_it_read(
    registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_path = tmp_path / "store"
    data_repo = f"{registry.host}/acme/runs-build-data"
    with Targets(store_path=store_path) as targets:
        _write_csv(tmp_path / "v2", 150)
        v2 = api.dataset_push(targets, tmp_path / "v2", f"{data_repo}:v2").digest
        _write_csv(tmp_path / "v3", 120)
        v3 = api.dataset_push(targets, tmp_path / "v3", f"{data_repo}:v3").digest
    assert v2 != v3

    project = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", project)
    text = (project / "modelpack.yaml").read_text()
    text = text.replace("paths: [weights.json]", "paths: [model.pkl]").replace(
        "format: other", "format: sklearn-pickle"
    )
    text = text.replace("    mae_thousands: 0.0", "    f1: 0.0").replace("mae_thousands <= 1", "f1 >= 0.5")
    text += f"\ndatasets:\n  - name: train\n    ref: {data_repo}:v3\n    path: data\n"
    (project / "modelpack.yaml").write_text(text)

    monkeypatch.chdir(project)
    experiment = f"{registry.host}/acme/runs-build"
    with track.run(
        params={"alpha": 1e-4}, tags=["v2"], repo=experiment, store=store_path, sample_every=60
    ) as run:
        X, y = _read_csv(run.dataset(f"{data_repo}:v2"))
        clf = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)
        for epoch in range(3):
            clf.partial_fit(X, y, classes=np.unique(y))
            run.log(epoch, f1=f1_score(y, clf.predict(X), average="macro"))
        with open("model.pkl", "wb") as f:
            pickle.dump(clf, f)
        run.checkpoint("model.pkl", step=2)
    trained = (project / "model.pkl").read_bytes()
    with Targets(store_path=tmp_path / "query") as targets:  # runs are found by the dataset version read
        assert [s.id for s in api.runs_ls(targets, experiment, where=[f"dataset={data_repo}:v2"]).runs] == [
            run.id
        ]
        assert api.runs_ls(targets, experiment, where=[f"dataset={data_repo}:v3"]).runs == ()
    (project / "model.pkl").unlink()  # CI: the weights are an output, never committed
    shutil.copytree(tmp_path / "v3", project / "data")  # and another version is on disk now

    with Targets(store_path=store_path) as targets:
        built = api.build(targets, project, image=False, run=f"{experiment}:{run.id}")
    record = built.bundle.record
    assert (project / "model.pkl").read_bytes() == trained  # the checkpoint's bytes, back in place
    [train] = record.datasets
    assert (train.name, train.digest, train.ref) == ("train", v2, f"{data_repo}:v2")
    assert record.run is not None and (record.run.id, record.run.checkpoint) == (run.id, "model.pkl")
    assert record.run.ref == f"{experiment}:run-{run.id}"
    assert record.params == {"alpha": 0.0001}
    assert run.record is not None and record.metrics["f1"].value == run.record.metrics["f1"]
    assert record.history is not None and record.history.rows == 3
    assert any(f.path == "models/model.pkl" for f in record.files)

    # the portal links the run to the release built from it, and back
    with Targets(store_path=store_path) as targets:
        model = built.tag.split(":")[0]  # the local store's repository
        pages = Pages(Source(targets, [experiment, model], DiskCache(tmp_path / "c"), Memo()))
        run_page = pages.run(pages.src.slug_of[experiment], run.id)
        version_page = pages.version(pages.src.slug_of[model], built.tag.split(":")[1])
    assert (
        f'class="release" href="../../../{Links().version(pages.src.slug_of[model], built.bundle.version)}"'
        in run_page
    )
    assert f'href="../../../{Links().run(pages.src.slug_of[experiment], run.id)}"' in version_page

    (project / "model.pkl").write_bytes(b"other weights")
    refused = pytest.raises(InputError, match=r"is not run .*checkpoint")
    with refused, Targets(store_path=store_path) as targets:
        api.build(targets, project, image=False, run=f"{experiment}:{run.id}")
