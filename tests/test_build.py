"""modelpack build: a CNCF ModelPack bundle in the local store, valid, reproducible, and fast when warm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import support.schemacheck as schemacheck
from support.clirun import run_cli

from modelpack import api
from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Manifest, parse
from modelpack.record.record import Record
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _copy_example(name: str, dest: Path, mtime: int) -> Path:
    shutil.copytree(EXAMPLES / name, dest)
    for p in dest.rglob("*"):
        os.utime(p, (mtime, mtime))
    return dest


def _manifest(store: LayoutStore, tag: str) -> Manifest:
    raw = store.get_manifest(tag)
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Manifest)
    return doc


def test_bundle_validates_against_oci_and_model_spec(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")
    result = api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ={}).bundle
    doc = _manifest(store, "iris-onnx:1.0.0")
    schemacheck.validate_manifest(json.loads(doc.to_bytes()))
    assert doc.artifact_type == mt.MODEL_ARTIFACT
    assert doc.config.media_type == mt.MODEL_CONFIG
    config = json.loads(store.read_blob_bytes(doc.config.digest))
    schemacheck.validate_model_config(config)
    tars = [d for d in doc.layers if d.media_type.endswith(".tar")]
    assert config["modelfs"]["diffIds"] == [d.digest for d in tars]
    assert all(d.annotations.get(mt.ANN_FILEPATH) for d in tars)
    kinds = {d.media_type for d in doc.layers}
    assert {mt.MODEL_WEIGHT_TAR, mt.MODEL_CODE_TAR, mt.MODEL_DOC_TAR, mt.RECORD} <= kinds
    # the record rides in the annotation and in its own layer, byte for byte the same
    record_layer = next(d for d in doc.layers if d.media_type == mt.RECORD)
    assert store.read_blob_bytes(record_layer.digest).decode() == doc.annotations[mt.ANN_RECORD]
    record = Record.from_bytes(doc.annotations[mt.ANN_RECORD])
    assert record == result.record
    assert record.metrics["accuracy"].dataset == "iris-test"
    assert {d.name for d in record.datasets} == {"iris-train", "iris-test"}
    assert record.lock is not None and record.lock.count > 0
    assert [f.path for f in record.files if f.path.startswith("models/")] == ["models/model.onnx"]


def test_layers_unpack_to_the_image_tree(tmp_path: Path) -> None:
    import tarfile

    store = LayoutStore(tmp_path / "store")
    api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ={})
    names: set[str] = set()
    for d in _manifest(store, "iris-onnx:1.0.0").layers:
        if d.media_type.endswith(".tar"):
            with tarfile.open(store.blob_path(d.digest)) as tf:
                names |= set(tf.getnames())
    assert {"models/model.onnx", "code/requirements.lock", "code/cases.json", "docs/README.md"} <= names
    # record file hashes are the real sha256 of the files
    record = Record.from_bytes(_manifest(store, "iris-onnx:1.0.0").annotations[mt.ANN_RECORD])
    onnx = next(f for f in record.files if f.path == "models/model.onnx")
    out = subprocess.run(
        ["sha256sum", str(EXAMPLES / "iris-onnx" / "model.onnx")], capture_output=True, text=True
    )
    assert onnx.sha256 == "sha256:" + out.stdout.split()[0]


def test_two_builds_in_different_dirs_with_different_mtimes_are_identical(tmp_path: Path) -> None:
    a = _copy_example("iris-onnx", tmp_path / "a" / "proj", 1_000_000_000)
    b = _copy_example("iris-onnx", tmp_path / "b" / "elsewhere", 1_700_000_000)
    os.chmod(b / "model.onnx", 0o600)  # modes on disk do not leak into the tar either
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    ra = api.build(Targets(store_path=tmp_path / "sa"), a, environ=env).bundle
    rb = api.build(Targets(store_path=tmp_path / "sb"), b, environ=env).bundle
    assert ra.manifest.digest == rb.manifest.digest
    assert [d.digest for d in ra.layers] == [d.digest for d in rb.layers]


def test_source_date_epoch_changes_the_digest(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "s")
    r1 = api.build(
        Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ={"SOURCE_DATE_EPOCH": "1"}
    ).bundle
    r2 = api.build(
        Targets(store_path=store.root),
        EXAMPLES / "iris-onnx",
        environ={"SOURCE_DATE_EPOCH": "2"},
        version="1.0.1",
    ).bundle
    assert r1.manifest.digest != r2.manifest.digest


def test_warm_rebuild_reads_nothing_and_a_change_rebuilds_one_layer(tmp_path: Path) -> None:
    proj = _copy_example("iris-onnx", tmp_path / "p", 1_600_000_000)
    time.sleep(0.25)  # files changed within the stat cache's racy window are never cached (statcache.py)
    store = LayoutStore(tmp_path / "s")
    cold = api.build(Targets(store_path=store.root), proj, environ={}).bundle
    assert cold.reused_layers == 0
    warm = api.build(Targets(store_path=store.root), proj, environ={}).bundle
    assert warm.reused_layers == len(warm.layers)
    assert warm.manifest.digest == cold.manifest.digest
    (proj / "README.md").write_text("changed docs\n")
    changed = api.build(Targets(store_path=store.root), proj, environ={}).bundle
    assert changed.reused_layers == len(changed.layers) - 1
    assert changed.manifest.digest != cold.manifest.digest


def test_cli_build_prints_digest_and_json(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = run_cli("build", str(EXAMPLES / "custom-handler"), "--no-image", "--store", str(store))
    assert out.returncode == 0, out.stderr
    digest = out.stdout.strip()
    assert digest.startswith("sha256:")
    js = run_cli("build", str(EXAMPLES / "custom-handler"), "--no-image", "--store", str(store), "--json")
    assert json.loads(js.stdout)["digest"] == digest
    listed = json.loads(run_cli("list", "--store", str(store), "--json").stdout)["releases"]
    assert [r["digest"] for r in listed] == [digest]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda p: (p / "model.onnx").unlink(), "model.onnx"),
        (lambda p: (p / "data" / "iris-test.csv").unlink(), "iris-test"),
        (lambda p: (p / "requirements.lock").write_text("numpy>=1.0\n"), "numpy"),
        (lambda p: (p / "metrics.json").write_text('{"accuracy": "high"}'), "accuracy"),
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_is_stored(tmp_path: Path, mutate, needle) -> None:  # type: ignore[no-untyped-def]
    proj = _copy_example("iris-onnx", tmp_path / "p", 1_600_000_000)
    mutate(proj)
    store = tmp_path / "store"
    out = run_cli("build", str(proj), "--no-image", "--store", str(store))
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and needle in out.stderr
    assert "Traceback" not in out.stderr
    assert not store.exists() or LayoutStore(store).list_tags() == []


def test_missing_packfile_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no modelpack\.yaml"):
        api.build(Targets(store_path=tmp_path / "s"), tmp_path)


def test_a_base_image_no_registry_serves_says_base_images_come_from_a_registry(tmp_path: Path) -> None:
    """A base image only `docker images` lists was looked up in a registry with a bare DNS error."""
    from fixtures.registry import free_port
    from support.clirun import run_main

    env = {"MODELPACK_STORE": str(tmp_path / "store"), "SOURCE_DATE_EPOCH": "1700000000"}
    base = f"127.0.0.1:{free_port()}/library/python:3.11-slim"  # nothing listens there
    done = run_main("build", str(EXAMPLES / "iris-onnx"), "--base", base, env=env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"base image {base}: cannot connect to" in done.stderr
    assert "base images are read from a registry, never from the local Docker engine" in done.stderr
    assert f"docker tag {base} HOST/python:3.11-slim" in done.stderr and "--base HOST/" in done.stderr
