"""What `modelpack build` checks or says before a release exists, instead of it surfacing in CI: gates on
unknown metrics, a model.format the files contradict, a dirty git tree, and where `created` comes from."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import joblib
import pytest
from support.clirun import run_cli

from modelpack import api
from modelpack.bundle.formats import sniff
from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MTIME = 1_600_000_000


def _copy(example: str, dest: Path) -> Path:
    shutil.copytree(EXAMPLES / example, dest)
    for p in dest.rglob("*"):
        os.utime(p, (MTIME, MTIME))
    return dest


def _edit(proj: Path, old: str, new: str) -> None:
    packfile = proj / "modelpack.yaml"
    text = packfile.read_text()
    assert old in text
    packfile.write_text(text.replace(old, new, 1))


def _build_cli(proj: Path, store: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("build", str(proj), "--no-image", "--store", str(store), *extra, env=env)


def _stored_nothing(store: Path) -> bool:
    return not store.exists() or LayoutStore(store).list_tags() == []


def _utc(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- gates -----------------------------------------------------------------------------------------------


def test_gate_on_a_misspelt_metric_is_refused_at_build_with_did_you_mean(tmp_path: Path) -> None:
    proj = _copy("iris-onnx", tmp_path / "p")
    _edit(proj, "- accuracy >= 0.9 ", "- acuracy >= 0.9 ")
    store = tmp_path / "store"
    out = _build_cli(proj, store)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(
        "error: modelpack.yaml: tests.gates[0]: 'acuracy >= 0.9' names an unknown metric 'acuracy' "
        "(did you mean 'accuracy'? known metrics: accuracy, f1_macro, "
    ), out.stderr
    # the names a test run measures are offered too: the build and the runner share one list
    assert "latency_p95_ms" in out.stderr and "image_size_mb" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert _stored_nothing(store)


def test_gates_on_measured_metrics_build_and_a_misspelt_one_gets_the_measured_name(tmp_path: Path) -> None:
    proj = _copy("iris-onnx", tmp_path / "p")
    _edit(proj, "- latency_p95_ms <= 50", "- latency_p99_ms <= 80\n    - image_size_mb <= 900")
    store = LayoutStore(tmp_path / "store")
    result = api.build(Targets(store_path=store.root), proj, environ={}).bundle
    assert result.record.tests is not None
    assert list(result.record.tests.gates) == [
        "accuracy >= 0.9", "f1_macro >= 0.9", "latency_p99_ms <= 80", "image_size_mb <= 900"
    ]  # fmt: skip
    _edit(proj, "- latency_p99_ms <= 80", "- latency_p99 <= 80")
    with pytest.raises(InputError) as err:
        api.build(Targets(store_path=store.root), proj, environ={})
    assert "tests.gates[2]: 'latency_p99 <= 80' names an unknown metric" in err.value.message
    assert err.value.hint is not None and err.value.hint.startswith("did you mean 'latency_p99_ms'?")


# --- model.format against the bytes ----------------------------------------------------------------------


def _safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0)


def _gguf() -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 0)  # version 3, no tensors, no metadata


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # torch.save's layout: a pickle and its storages under archive/
        z.writestr("archive/data.pkl", pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def _joblib(compress: int = 0) -> bytes:
    buf = io.BytesIO()
    joblib.dump({"coef": [1.0, 2.0], "intercept": 0.5}, buf, compress=compress)
    return buf.getvalue()


def _project(tmp_path: Path, fmt: str, files: dict[str, bytes]) -> Path:
    """The custom-handler example with `files` as its model, declared `fmt`."""
    proj = _copy("custom-handler", tmp_path / "p")
    for name, data in files.items():
        (proj / name).write_bytes(data)
    _edit(proj, "paths: [weights.json]", f"paths: [{', '.join(files)}]")
    _edit(proj, "format: other", f"format: {fmt}")
    return proj


@pytest.mark.parametrize(
    ("fmt", "files", "wrong"),
    [
        ("safetensors", {"model.safetensors": _safetensors(), "config.json": b'{"hidden": 2}'}, "onnx"),
        ("gguf", {"model.gguf": _gguf()}, "safetensors"),
        ("pytorch", {"model.pt": _torch_zip()}, "sklearn-pickle"),
        ("pytorch", {"legacy.bin": pickle.dumps({"w": [1.0]}, protocol=2)}, "gguf"),
        ("sklearn-pickle", {"model.joblib": _joblib(compress=3)}, "pytorch"),
        ("sklearn-pickle", {"model.pkl": pickle.dumps({"w": [1.0]}, protocol=0)}, "onnx"),
        ("other", {"weights.npy": b"\x93NUMPY\x01\x00"}, "onnx"),
    ],
)
def test_files_build_as_the_format_they_hold_and_are_refused_as_another(
    tmp_path: Path, fmt: str, files: dict[str, bytes], wrong: str
) -> None:
    result = api.build(
        Targets(store_path=tmp_path / "store"), _project(tmp_path / "ok", fmt, files), environ={}
    )
    assert result.bundle.record.serving is not None and result.bundle.record.serving.format == fmt
    with pytest.raises(InputError) as err:
        api.build(
            Targets(store_path=tmp_path / "store"), _project(tmp_path / "bad", wrong, files), environ={}
        )
    assert f"model.format is {wrong}, but no model file is " in err.value.message
    assert all(f"models/{name}" in err.value.message for name in files)


def test_padded_onnx_builds_and_an_lfs_pointer_in_its_place_is_refused(tmp_path: Path) -> None:
    proj = _copy("iris-onnx", tmp_path / "p")
    with (proj / "model.onnx").open("ab") as f:
        f.write(b"\0" * 3)  # zero padding some tools append; the runtime loads it
    assert sniff(proj / "model.onnx") == "onnx"
    store = LayoutStore(tmp_path / "store")
    api.build(Targets(store_path=store.root), proj, environ={})
    (proj / "model.onnx").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n")
    with pytest.raises(InputError) as err:
        api.build(Targets(store_path=store.root), proj, environ={})
    assert str(err.value) == (
        "models/model.onnx: is a Git LFS pointer, not the weights (run `git lfs pull` in the project before "
        "building)"
    )


def test_joblib_declared_safetensors_is_refused_naming_the_file(tmp_path: Path) -> None:
    proj = _project(tmp_path, "safetensors", {"model.joblib": _joblib()})
    store = tmp_path / "store"
    out = _build_cli(proj, store)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(
        "error: modelpack.yaml: model.format is safetensors, but no model file is a safetensors file: "
        "models/model.joblib is a pickle"
    ), out.stderr
    assert "set model.format to sklearn-pickle" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert _stored_nothing(store)


@pytest.mark.parametrize(
    ("fmt", "files", "needle"),
    [
        # declared onnx, weights in another format: the ONNX runtime would be handed them at serve time
        ("onnx", {"model.bin": _safetensors()}, "models/model.bin is a safetensors file"),
        ("gguf", {"model.bin": b"\0" * 64}, "models/model.bin is no format recognised"),
        ("sklearn-pickle", {"model.data": _torch_zip()}, "set model.format to pytorch"),
        # a suffix that names a format must hold it, whatever model.format says
        ("other", {"model.safetensors": pickle.dumps([1.0])}, "models/model.safetensors: not a safetensors"),
        ("onnx", {"model.onnx": _gguf()}, "models/model.onnx: not an ONNX model: it is a GGUF file"),
    ],
)
def test_format_the_bytes_contradict_is_refused(
    tmp_path: Path, fmt: str, files: dict[str, bytes], needle: str
) -> None:
    proj = _project(tmp_path, fmt, files)
    store = LayoutStore(tmp_path / "store")
    with pytest.raises(InputError) as err:
        api.build(Targets(store_path=store.root), proj, environ={})
    assert needle in str(err.value)
    assert store.list_tags() == [] and list(store.root.glob("blobs/sha256/*")) == []


# --- git: dirty tree, commit time ------------------------------------------------------------------------


def _git(proj: Path, *args: str, env: dict[str, str] | None = None) -> None:
    base = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(proj)}
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=proj, check=True, capture_output=True, env={**os.environ, **base, **(env or {})},
    )  # fmt: skip


def test_dirty_tree_builds_with_one_warning_line_and_clean_has_none(tmp_path: Path) -> None:
    proj = _copy("custom-handler", tmp_path / "p")
    commit_time = 1_650_000_000
    _git(proj, "init", "-q")
    _git(proj, "add", ".")
    _git(proj, "commit", "-qm", "v1", env={"GIT_COMMITTER_DATE": f"@{commit_time} +0000"})
    store = tmp_path / "store"

    clean = _build_cli(proj, store)
    assert clean.returncode == 0, clean.stderr
    assert "warning" not in clean.stderr
    assert f"created {_utc(commit_time)} from the time of commit " in clean.stderr

    (proj / "weights.json").write_text((proj / "weights.json").read_text() + "\n")
    dirty = _build_cli(proj, store)
    assert dirty.returncode == 0, dirty.stderr
    warnings = [line for line in dirty.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, dirty.stderr
    assert warnings[0].startswith("warning: uncommitted changes (weights.json): the release records commit ")
    assert dirty.stdout.strip().startswith("sha256:")  # stdout stays the digest
    js = _build_cli(proj, store, "--json")
    body = json.loads(js.stdout)
    assert body["warnings"] == [warnings[0].removeprefix("warning: ")]
    record = json.loads(LayoutStore(store).get_manifest(body["tag"]).raw)["annotations"][mt.ANN_RECORD]
    assert json.loads(record)["git"]["dirty"] is True


# --- created outside git ---------------------------------------------------------------------------------


def test_created_outside_git_is_the_newest_input_mtime_and_said(tmp_path: Path) -> None:
    proj = _copy("iris-onnx", tmp_path / "p")
    newer = MTIME + 86_400
    os.utime(proj / "metrics.json", (newer, newer))
    store = tmp_path / "store"
    out = _build_cli(proj, store, "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["created"]["time"] == _utc(newer)
    assert body["created"]["from"].startswith("the newest input file, metrics.json (no git commit;")
    human = _build_cli(proj, store)
    lines = human.stderr.splitlines()
    assert f"created {_utc(newer)} from the newest input file, metrics.json" in lines[1], human.stderr
    assert human.stdout.strip() == body["digest"]  # same inputs, same time: the same release


def test_touching_a_file_moves_created_but_no_untouched_layer(tmp_path: Path) -> None:
    proj = _copy("iris-onnx", tmp_path / "p")
    store = LayoutStore(tmp_path / "store")
    first = api.build(Targets(store_path=store.root), proj, environ={}).bundle
    assert first.record.created == _utc(MTIME)
    os.utime(proj / "README.md", (MTIME + 60, MTIME + 60))
    second = api.build(Targets(store_path=store.root), proj, environ={}).bundle
    assert second.record.created == _utc(MTIME + 60)
    # tar headers keep the fixed epoch: the weights layer is the same blob, nothing to upload again
    weights = [[d.digest for d in b.layers if d.media_type == mt.MODEL_WEIGHT_TAR] for b in (first, second)]
    assert weights[0] == weights[1]


def test_source_date_epoch_wins_over_file_times_and_is_named(tmp_path: Path) -> None:
    proj = _copy("iris-onnx", tmp_path / "p")
    out = _build_cli(proj, tmp_path / "store", SOURCE_DATE_EPOCH="1700000000")
    assert out.returncode == 0, out.stderr
    assert "created 2023-11-14T22:13:20Z from SOURCE_DATE_EPOCH\n" in out.stderr
