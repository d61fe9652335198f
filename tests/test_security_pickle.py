"""Pickle-based weights are scanned at build: a pickle that would run code refuses the build unless
modelpack.yaml allows its import, and what was found goes in the record. Nothing is ever unpickled."""

from __future__ import annotations

import collections
import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from support.clirun import run_cli

from modelpack import api
from modelpack.bundle.pickleops import scan_stream
from modelpack.bundle.picklescan import classify, enforce, scan_file
from modelpack.errors import InputError
from modelpack.record.record import PickleEntry
from modelpack.release.view import load_release
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {"SOURCE_DATE_EPOCH": "1700000000"}
MARKER = "modelpack-pwned-marker"


class Exploit:
    """Unpickling this runs a shell command: what a hostile weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _sklearn_model() -> Pipeline:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    labels = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 60)]
    return Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=200))]).fit(x, labels)


def _project(tmp_path: Path, weights: dict[str, bytes], allow: list[str] | None = None) -> Path:
    """A custom-handler project whose model is the given files (format sklearn-pickle)."""
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    for name, data in weights.items():
        (proj / name).write_bytes(data)
    text = (proj / "modelpack.yaml").read_text()
    paths = ", ".join(weights)
    text = text.replace("paths: [weights.json]", f"paths: [{paths}]").replace(
        "format: other", "format: sklearn-pickle"
    )
    if allow is not None:
        text += f"\nsecurity:\n  allow_pickle_imports: {allow}\n"
    (proj / "modelpack.yaml").write_text(text)
    return proj


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_refuses_the_build_and_runs_nothing(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / MARKER
    payload = pickle.dumps({"coef": [1.0, 2.0], "hook": Exploit(marker)}, protocol=protocol)
    proj = _project(tmp_path, {"model.pkl": payload})
    store = LayoutStore(tmp_path / "store")
    with pytest.raises(InputError) as err:
        api.build(Targets(store_path=store.root), proj, environ=ENV)
    message = str(err.value)
    assert "models/model.pkl" in message and "posix.system" in message and "refused" in message
    assert "allow_pickle_imports" in message
    assert not marker.exists()  # scanned, never loaded
    assert list(store.root.glob("blobs/sha256/*")) == []  # refused before anything was stored


def test_cli_refusal_is_one_line_exit_2(tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    proj = _project(tmp_path, {"model.pkl": pickle.dumps(Exploit(marker))})
    result = run_cli("build", str(proj), "--no-image", "--store", str(tmp_path / "store"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: models/model.pkl: the pickle imports posix.system")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not marker.exists()


def test_plain_sklearn_pickle_and_joblib_pass_and_are_recorded(tmp_path: Path) -> None:
    model = _sklearn_model()
    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    proj = _project(tmp_path, {"model.pkl": pickle.dumps(model), "model.joblib": buf.getvalue()})
    store = LayoutStore(tmp_path / "store")
    result = api.build(Targets(store_path=store.root), proj, environ=ENV)
    record = load_release(store, result.tag).record
    assert record is not None
    security = record.security
    assert security is not None
    pickles = {p.path: p for p in security.pickles}
    assert set(pickles) == {"models/model.pkl", "models/model.joblib"}
    for entry in pickles.values():
        assert "sklearn.linear_model._logistic.LogisticRegression" in entry.imports
        assert entry.dangerous == () and entry.error is None
    assert security.allowed == ()


def test_allowed_by_packfile_builds_and_records_the_finding(tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    proj = _project(tmp_path, {"model.pkl": pickle.dumps(Exploit(marker))}, allow=["posix.system"])
    store = LayoutStore(tmp_path / "store")
    result = api.build(Targets(store_path=store.root), proj, environ=ENV)
    record = load_release(store, result.tag).record
    assert record is not None
    assert record.security is not None
    assert record.security.allowed == ("posix.system",)
    assert record.security.pickles == (
        PickleEntry("models/model.pkl", ("posix.system",), dangerous=("posix.system",)),
    )
    assert not marker.exists()


def test_packfile_key_is_validated_with_did_you_mean(tmp_path: Path) -> None:
    proj = _project(tmp_path, {"model.pkl": pickle.dumps([1, 2])})
    yaml_path = proj / "modelpack.yaml"
    base = yaml_path.read_text()
    yaml_path.write_text(base + "\nsecurity:\n  allow_pickle_import: [os.system]\n")
    with pytest.raises(InputError, match=r"security\.allow_pickle_import: unknown key.*allow_pickle_imports"):
        api.build(Targets(store_path=tmp_path / "s"), proj, environ=ENV)
    yaml_path.write_text(base + "\nsecurity:\n  allow_pickle_imports: ['rm -rf /']\n")
    with pytest.raises(InputError, match=r"allow_pickle_imports\[0\]: 'rm -rf /' is not module\.name"):
        api.build(Targets(store_path=tmp_path / "s"), proj, environ=ENV)


def test_torch_style_zip_is_scanned_inside(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.pt", tmp_path / "bad.bin"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(collections.OrderedDict(weight=[1.0])))
        z.writestr("archive/data/0", b"\0" * 64)
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Exploit(tmp_path / MARKER)))
    (found,) = scan_file(good, "models/good.pt")
    assert found.member == "archive/data.pkl" and found.imports == ("collections.OrderedDict",)
    assert not found.dangerous
    (found,) = scan_file(bad, "models/bad.bin")
    assert found.dangerous == ("posix.system",)
    with pytest.raises(
        InputError, match=r"models/bad\.bin!archive/data\.pkl: the pickle imports posix\.system"
    ):
        enforce([found], [], where="modelpack.yaml")


def test_raw_bin_is_not_a_pickle_and_a_truncated_pickle_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "w.bin"
    raw.write_bytes(b"\x00\x01" * 100)
    assert scan_file(raw, "models/w.bin") == []
    cut = tmp_path / "w.pkl"
    cut.write_bytes(pickle.dumps(_sklearn_model())[:300])
    (found,) = scan_file(cut, "models/w.pkl")
    assert found.error is not None and "not a readable pickle" in found.error
    with pytest.raises(InputError, match="cannot be checked"):
        enforce([found], [], where="modelpack.yaml")
    security = enforce([found], ["*"], where="modelpack.yaml")
    assert security is not None and security.allowed == ("*",)


def test_joblib_arrays_of_every_kind_are_followed(tmp_path: Path) -> None:
    # joblib writes raw array buffers between opcodes; a payload after them must still be seen
    path = tmp_path / "a.joblib"
    joblib.dump(
        {
            "f": np.arange(1000.0),
            "s": np.zeros((3, 2), dtype="<U7"),
            "o": np.array(["x", 1, None], dtype=object),
            "rec": np.zeros(4, dtype=[("a", "i4"), ("b", "f8")]),
            "after": Exploit(tmp_path / MARKER),
        },
        path,
    )
    (found,) = scan_file(path, "models/a.joblib")
    assert found.error is None
    assert found.dangerous == ("posix.system",)


@pytest.mark.parametrize(
    ("module", "name", "kind"),
    [
        ("os", "system", "dangerous"),
        ("posix", "system", "dangerous"),
        ("subprocess", "Popen", "dangerous"),
        ("builtins", "eval", "dangerous"),
        ("builtins", "exec", "dangerous"),
        ("builtins", "__import__", "dangerous"),
        ("builtins", "getattr", "dangerous"),
        ("__builtin__", "open", "dangerous"),
        ("operator", "attrgetter", "dangerous"),
        ("runpy", "run_path", "dangerous"),
        ("sklearn.utils", "os.system", "dangerous"),  # an attribute walk out of a trusted package
        ("sklearn.base", "BaseEstimator.__init__.__globals__", "dangerous"),
        ("numpy.testing._private.utils", "runstring", "dangerous"),
        ("builtins", "set", "safe"),
        ("builtins", "frozenset", "safe"),
        ("builtins", "slice", "safe"),
        ("builtins", "complex", "safe"),
        ("collections", "OrderedDict", "safe"),
        ("numpy.core.multiarray", "_reconstruct", "safe"),
        ("torch._utils", "_rebuild_tensor_v2", "safe"),
        ("torch", "FloatStorage", "safe"),
        ("sklearn.tree._classes", "DecisionTreeClassifier", "safe"),
        ("numpy.random._pickle", "__randomstate_ctor", "safe"),
        ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence", "safe"),
        ("mylib.fast", "__pyx_unpickle_Thing", "unknown"),
        ("__main__", "MyNet", "unknown"),
        ("mylib.layers", "Block", "unknown"),
    ],
)
def test_classification(module: str, name: str, kind: str) -> None:
    assert classify(module, name) == kind


def test_scan_stream_reports_garbage_without_raising() -> None:
    for data in (b"", b"\x80\x05garbage", b"not a pickle at all", b"(((((((("):
        imports, error = scan_stream(io.BytesIO(data))
        assert error is not None and imports == set()


def test_random_states_and_trees_are_not_false_alarms() -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    forest = RandomForestClassifier(n_estimators=3, random_state=np.random.RandomState(0)).fit(x, y)
    for obj in (forest, rng, np.random.RandomState(1)):
        for protocol in (2, 5):
            imports, error = scan_stream(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
            assert error is None
            assert [f"{m}.{n}" for m, n in imports if classify(m, n) != "safe"] == []


def test_a_raw_bin_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path: Path) -> None:
    # raw float weights start with 0x80 once in 256 files; only PROTO 2-5 marks a pickle
    raw = tmp_path / "w.bin"
    raw.write_bytes(b"\x80\xff" + bytes(range(256)) * 4)
    assert scan_file(raw, "models/w.bin") == []


def test_a_plain_pickle_named_bin_is_still_scanned(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("true",))

    bad = tmp_path / "pytorch_model.bin"
    bad.write_bytes(pickle.dumps(Evil(), protocol=4))
    (found,) = scan_file(bad, "models/pytorch_model.bin")
    assert found.dangerous == ("posix.system",)
