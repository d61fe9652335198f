"""Framework versions at build: a scikit-learn pickle made by another version than the lock installs is
refused (naming both), unless allowed, and every check is recorded. The version is read without unpickling.
An ONNX model needing a newer opset than the locked onnxruntime runs is refused the same way."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import sklearn
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression
from support.clirun import run_cli

from modelpack import api
from modelpack.bundle import opsets
from modelpack.bundle.frameworks import pickled_sklearn_versions
from modelpack.errors import InputError
from modelpack.record.frameworks import VersionCheck
from modelpack.record.record import Record
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INSTALLED = sklearn.__version__
OTHER = "1.8.0" if INSTALLED != "1.8.0" else "1.7.2"


def _project(tmp_path: Path, locked: str) -> Path:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    clf = LogisticRegression().fit(np.eye(3), [0, 1, 2])
    (proj / "model.pkl").write_bytes(pickle.dumps(clf, protocol=4))
    text = (proj / "modelpack.yaml").read_text()
    text = text.replace("paths: [weights.json]", "paths: [model.pkl]").replace(
        "format: other", "format: sklearn-pickle"
    )
    (proj / "modelpack.yaml").write_text(text)
    (proj / "requirements.lock").write_text(f"numpy==2.4.6\nscikit-learn=={locked}\n")
    return proj


def test_a_pickle_made_by_another_scikit_learn_is_refused_naming_both(tmp_path: Path) -> None:
    proj = _project(tmp_path, OTHER)
    with pytest.raises(InputError) as e:
        api.build(Targets(store_path=tmp_path / "store"), proj, image=False)
    assert f"scikit-learn {INSTALLED}" in e.value.message and f"scikit-learn {OTHER}" in e.value.message
    assert "--allow-version-mismatch" in (e.value.hint or "")
    done = run_cli("build", str(proj), "--no-image", env={"MODELPACK_STORE": str(tmp_path / "s2")})
    assert done.returncode == 2 and done.stderr.count("error:") == 1 and "Traceback" not in done.stderr


def test_an_allowed_mismatch_builds_and_is_recorded(tmp_path: Path) -> None:
    proj = _project(tmp_path, OTHER)
    built = api.build(Targets(store_path=tmp_path / "store"), proj, image=False, allow_version_mismatch=True)
    assert built.bundle.record.frameworks == (
        VersionCheck("scikit-learn", INSTALLED, "models/model.pkl (pickled)", OTHER, allowed=True),
    )
    assert Record.from_bytes(built.bundle.record.to_bytes()).frameworks == built.bundle.record.frameworks


def test_a_matching_version_builds_with_its_check_recorded(tmp_path: Path) -> None:
    proj = _project(tmp_path, INSTALLED)
    built = api.build(Targets(store_path=tmp_path / "store"), proj, image=False)
    [check] = built.bundle.record.frameworks
    assert check.matches and not check.allowed and check.locked == INSTALLED


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.marker, "ran"))


def test_the_version_is_read_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    state = {"_sklearn_version": "1.2.3", "hook": _Exploit(marker)}
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(state, protocol=protocol))
        assert pickled_sklearn_versions(path) == {"1.2.3"}
    assert not marker.exists()
    path.write_bytes(b"\x80\x04not a pickle at all")
    assert pickled_sklearn_versions(path) == set()


def _onnx_project(tmp_path: Path, opset: int, onnxruntime: str) -> Path:
    """The iris example with a one-node model stamped `opset` and a lock pinning `onnxruntime`."""
    proj = tmp_path / "onnxproj"
    shutil.copytree(EXAMPLES / "iris-onnx", proj)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(proj / "model.onnx"))
    (proj / "requirements.lock").write_text(f"numpy==2.4.6\nonnxruntime=={onnxruntime}\n")
    return proj


def test_an_onnx_opset_newer_than_the_locked_onnxruntime_runs_is_refused_naming_both(tmp_path: Path) -> None:
    proj = _onnx_project(tmp_path, 21, "1.17.1")  # onnxruntime 1.17 runs ai.onnx up to opset 20
    with pytest.raises(InputError) as e:
        api.build(Targets(store_path=tmp_path / "store"), proj, image=False)
    msg = e.value.message
    assert "models/model.onnx" in msg and "ai.onnx opset 21" in msg
    assert "onnxruntime 1.17.1" in msg and "up to opset 20" in msg
    assert "onnxruntime>=1.18" in (e.value.hint or "") and "--allow-version-mismatch" in (e.value.hint or "")
    done = run_cli("build", str(proj), "--no-image", env={"MODELPACK_STORE": str(tmp_path / "s2")})
    assert done.returncode == 2 and done.stderr.count("error:") == 1 and "Traceback" not in done.stderr
    assert "ai.onnx opset 21" in done.stderr and "onnxruntime 1.17.1" in done.stderr


def test_an_allowed_opset_mismatch_builds_and_is_recorded(tmp_path: Path) -> None:
    proj = _onnx_project(tmp_path, 21, "1.17.1")
    done = run_cli(
        "build", str(proj), "--no-image", "--allow-version-mismatch", "--json",
        env={"MODELPACK_STORE": str(tmp_path / "s")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    built = api.build(Targets(store_path=tmp_path / "store"), proj, image=False, allow_version_mismatch=True)
    [check] = built.bundle.record.frameworks
    assert check == VersionCheck(
        "ai.onnx", "21", "models/model.onnx (opset)", "20", allowed=True, runtime="onnxruntime 1.17.1"
    )
    assert not check.matches and check.checked
    assert Record.from_bytes(built.bundle.record.to_bytes()).frameworks == built.bundle.record.frameworks


def test_an_opset_the_locked_onnxruntime_runs_builds_with_its_check_recorded(tmp_path: Path) -> None:
    proj = _onnx_project(tmp_path, 20, "1.17.1")
    built = api.build(Targets(store_path=tmp_path / "store"), proj, image=False)
    [check] = built.bundle.record.frameworks
    assert check.matches and not check.allowed and (check.found, check.locked) == ("20", "20")


def test_the_iris_example_passes_with_its_opsets_recorded(tmp_path: Path) -> None:
    """Its lock pins an onnxruntime newer than the compatibility table the build knows: recorded as
    unchecked, not guessed; with a known release the same model is checked and matches."""
    built = api.build(Targets(store_path=tmp_path / "store"), EXAMPLES / "iris-onnx", image=False)
    checks = {c.package: c for c in built.bundle.record.frameworks}
    assert set(checks) == {"ai.onnx", "ai.onnx.ml"}
    assert checks["ai.onnx"].found == "17" and checks["ai.onnx.ml"].found == "1"
    locked = [line for line in (EXAMPLES / "iris-onnx" / "requirements.lock").read_text().splitlines()
              if line.startswith("onnxruntime==")]  # fmt: skip
    ort = locked[0].removeprefix("onnxruntime==").split()[0]
    assert all(c.runtime == f"onnxruntime {ort}" and not c.allowed for c in checks.values())
    if opsets.runtime_max_opset(ort, "ai.onnx") is None:
        assert not any(c.checked for c in checks.values())
    else:
        assert all(c.matches for c in checks.values())
    proj = tmp_path / "iris"
    shutil.copytree(EXAMPLES / "iris-onnx", proj)
    (proj / "requirements.lock").write_text("numpy==2.4.6\nonnxruntime==1.18.0\n")
    built = api.build(Targets(store_path=tmp_path / "store"), proj, image=False)
    known = {c.package: (c.found, c.locked, c.matches) for c in built.bundle.record.frameworks}
    assert known == {"ai.onnx": ("17", "21", True), "ai.onnx.ml": ("1", "4", True)}


def test_opsets_are_read_through_zero_padding_and_junk_is_left_uncompared(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes((EXAMPLES / "iris-onnx" / "model.onnx").read_bytes() + b"\0" * 3)
    assert opsets.model_opsets(path) == {"ai.onnx": 17, "ai.onnx.ml": 1}
    path.write_bytes(b"\x08\x07fake-onnx-bytes")
    assert opsets.model_opsets(path) == {}
