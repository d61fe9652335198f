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


# --- issue 21 item 2: the six bypasses, each refused; real models still pass ------------------------------


def _hidden_after_joblib_array(marker: Path) -> bytes:
    """A joblib file whose f8 array's dtype state claims 64-byte items: a scanner that believes the state
    skips 256 bytes where numpy (and so joblib) reads 32, and a posix.system call hides in between."""
    buf = io.BytesIO()
    joblib.dump({"a": np.arange(4.0)}, buf)
    data = buf.getvalue()
    state = data.index(b"NNNJ\xff\xff\xff\xff") + 3  # the dtype state's elsize: -1 (numpy's own)
    data = data[:state] + b"J\x40\x00\x00\x00" + data[state + 5 :]
    start = data.index(b"numpy_array_alignment_bytes") + len("numpy_array_alignment_bytes") + 5
    pad = data[start]
    end = start + 1 + pad + 32  # the array's real bytes end here
    hidden = f"cposix\nsystem\n(S'touch {marker}'\ntR0".encode()
    if len(hidden) % 2:
        hidden = hidden.replace(b"touch ", b"touch  ")
    gap = 4 * 64 - 32
    return data[:end] + hidden + b"N0" * ((gap - len(hidden)) // 2) + data[end:]


def _legacy_pt_with_a_protocol_0_second_pickle(marker: Path) -> bytes:
    from modelpack.bundle.pickleops import TORCH_LEGACY_MAGIC

    return b"".join(
        [pickle.dumps(TORCH_LEGACY_MAGIC, 2), pickle.dumps(Exploit(marker), 0), pickle.dumps({}, 2),
         pickle.dumps(collections.OrderedDict(), 2), pickle.dumps([], 2), b"\x00" * 64]
    )  # fmt: skip


class _Global:
    """Pickles as a bare reference to `module.name` (what a hostile pickle names)."""

    def __init__(self, module: str, name: str, *args: object) -> None:
        self.module, self.name, self.args = module, name, args

    def __reduce__(self) -> tuple[Any, tuple[object, ...]]:
        import importlib

        return (getattr(importlib.import_module(self.module), self.name), self.args)


def _bypasses(marker: Path) -> dict[str, tuple[str, bytes, str]]:
    """Name -> (file name, bytes, the global the refusal names)."""
    import gzip

    from sklearn.datasets import _base

    assert _base.urlretrieve.__module__ == "urllib.request"  # why a package is no reason to trust a name
    return {
        "pydoc.pipepager": ("model.pkl", pickle.dumps(_Global("pydoc", "pipepager", "x", f"touch {marker}")),
                            "pydoc.pipepager"),
        "logging.config.dictConfig": ("model.pkl", pickle.dumps(_Global("logging.config", "dictConfig", {})),
                                      "logging.config.dictConfig"),
        "sklearn urlretrieve": ("model.pkl", _sklearn_urlretrieve(), "sklearn.datasets._base.urlretrieve"),
        "joblib dtype size": ("model.joblib", _hidden_after_joblib_array(marker), "posix.system"),
        "pkl.gz": ("model.pkl.gz", gzip.compress(pickle.dumps(Exploit(marker)), mtime=0), "posix.system"),
        "legacy pt": ("model.pt", _legacy_pt_with_a_protocol_0_second_pickle(marker), "posix.system"),
    }  # fmt: skip


def _sklearn_urlretrieve() -> bytes:
    # pickle names a function by its __module__; a hostile file names it where sklearn re-exports it
    return b"\x80\x04csklearn.datasets._base\nurlretrieve\n(S'http://127.0.0.1:9/x'\nS'/tmp/x'\ntR."


@pytest.mark.parametrize("case", ["pydoc.pipepager", "logging.config.dictConfig", "sklearn urlretrieve",
                                  "joblib dtype size", "pkl.gz", "legacy pt"])  # fmt: skip
def test_the_six_bypasses_are_refused_by_the_build(tmp_path: Path, case: str) -> None:
    marker = tmp_path / MARKER
    name, data, named = _bypasses(marker)[case]
    proj = _project(tmp_path, {name: data})
    with pytest.raises(InputError) as err:
        api.build(Targets(store_path=tmp_path / "store"), proj, environ=ENV)
    message, hint = str(err.value), err.value.hint or ""
    assert f"models/{name}" in message and named in message and "refused" in message, message
    assert f"allow_pickle_imports: ['{named}']" in hint  # how to allow it, by that exact name
    assert not marker.exists()


def test_the_joblib_and_legacy_bypasses_are_real(tmp_path: Path) -> None:
    """The crafted files run their command when loaded by the real loaders: the refusals above are of
    working attacks, not of malformed files (run in a child process)."""
    marker = tmp_path / MARKER
    files = _bypasses(marker)
    (tmp_path / "a.joblib").write_bytes(files["joblib dtype size"][1])
    (tmp_path / "b.pt").write_bytes(files["legacy pt"][1])
    code = (
        "import joblib, pickle, sys\n"
        "joblib.load(sys.argv[1])\n"
        "f = open(sys.argv[2], 'rb'); pickle.load(f); pickle.load(f)\n"
    )
    import subprocess
    import sys

    for step in ("a.joblib", "b.pt"):
        marker.unlink(missing_ok=True)
        args = [str(tmp_path / "a.joblib"), str(tmp_path / "b.pt")]
        if step == "b.pt":
            code_ = code.replace("joblib.load(sys.argv[1])\n", "")
        else:
            code_ = code.split("f = open")[0]
        subprocess.run([sys.executable, "-c", code_, *args], check=False, capture_output=True, timeout=60)
        assert marker.exists(), step


def test_an_unknown_global_is_one_line_naming_it_and_allowed_by_name(tmp_path: Path) -> None:
    data = pickle.dumps(_Global("logging.config", "dictConfig", {"version": 1}))
    proj = _project(tmp_path, {"model.pkl": data})
    result = run_cli("build", str(proj), "--no-image", "--store", str(tmp_path / "store"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "error: models/model.pkl: the pickle imports logging.config.dictConfig, which is not on modelpack's "
        "list of safe globals; refused ("
    )
    assert (
        "allow it by name in modelpack.yaml: security: {allow_pickle_imports: ['logging.config.dictConfig']}"
        in (result.stderr)
    )
    allowed = _project(tmp_path / "again", {"model.pkl": data}, allow=["logging.config.dictConfig"])
    built = api.build(Targets(store_path=tmp_path / "store2"), allowed, environ=ENV)
    record = load_release(LayoutStore(tmp_path / "store2"), built.tag).record
    assert record is not None and record.security is not None
    assert record.security.allowed == ("logging.config.dictConfig",)
    assert record.security.pickles[0].unknown == ("logging.config.dictConfig",)


def test_nothing_is_trusted_by_prefix() -> None:
    assert classify("sklearn.datasets._base", "urlretrieve") == "unknown"
    assert classify("sklearn.utils", "Bunch") == "unknown"  # a re-export: only where it is defined
    assert classify("sklearn.utils._bunch", "Bunch") == "safe"
    assert classify("torch.nn.modules.linear", "Linear") == "unknown"
    assert classify("xgboost.core", "Booster") == "unknown"


def test_a_gzipped_pickle_is_found_by_content_whatever_its_name(tmp_path: Path) -> None:
    import bz2
    import gzip
    import lzma

    payload = pickle.dumps(Exploit(tmp_path / MARKER), protocol=4)
    for name, data in (("w.gz", gzip.compress(payload)), ("w.data", bz2.compress(payload)),
                       ("weights", lzma.compress(payload)), ("w.safetensors", payload)):  # fmt: skip
        (tmp_path / name).write_bytes(data)
        (found,) = scan_file(tmp_path / name, f"models/{name}")
        assert found.dangerous == ("posix.system",), name
    csv = tmp_path / "d.csv.gz"
    csv.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert scan_file(csv, "datasets/d/d.csv.gz") == []  # a compressed CSV holds no pickle


def test_every_pickle_in_a_file_is_followed_to_its_end(tmp_path: Path) -> None:
    two = tmp_path / "two.pkl"
    two.write_bytes(pickle.dumps([1], 2) + pickle.dumps(Exploit(tmp_path / MARKER), 0))
    (found,) = scan_file(two, "models/two.pkl")
    assert found.dangerous == ("posix.system",)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(pickle.dumps([1], 2) + b"\x00garbage")
    (found,) = scan_file(junk, "models/junk.pkl")
    assert found.error is not None  # unreadable past the first pickle: refused as unscannable


def test_fitted_scikit_learn_models_pass_as_pickle_and_joblib(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 4)), rng.integers(0, 3, 80)
    cats = np.column_stack([x, rng.integers(0, 3, 80)])
    models = [
        HistGradientBoostingClassifier(max_iter=5).fit(x, y),
        GradientBoostingClassifier(n_estimators=3).fit(x, y),
        KNeighborsClassifier(algorithm="kd_tree").fit(x, y),
        SVC().fit(x, y),
        KMeans(n_clusters=2, n_init=1).fit(x),
        Pipeline([("ct", ColumnTransformer([("oh", OneHotEncoder(), [4])], remainder="passthrough")),
                  ("lr", LogisticRegression(max_iter=200))]).fit(cats, y),
    ]  # fmt: skip
    for i, model in enumerate(models):
        for how in ("pickle", "joblib-zlib", "joblib-gzip"):
            path = tmp_path / f"m{i}.{how}.joblib"
            if how == "pickle":
                path.write_bytes(pickle.dumps(model, protocol=5))
            else:
                joblib.dump(model, path, compress=(how.split("-")[1], 3))
            findings = scan_file(path, f"models/{path.name}")
            clean = all(f.error is None and not f.unknown and not f.dangerous for f in findings)
            assert findings and clean, (type(model).__name__, how, findings)
