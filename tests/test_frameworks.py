"""Framework versions at build: a scikit-learn pickle made by another version than the lock installs is
refused (naming both), unless allowed, and every check is recorded. The version is read without unpickling."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from support.clirun import run_cli

from modelpack import api
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
