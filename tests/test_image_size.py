"""Images without dead weight: the runtime's lock split by handler, deps and runtime layers gzip-compressed
(reproducible by their diff IDs), the runtime's packages in the release's record, and a lock that must be
complete for the image (checked from the downloaded wheels' METADATA)."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

import modelpack
from modelpack import api
from modelpack.errors import InputError
from modelpack.image import gzlayer, wheels
from modelpack.image.runtime import runtime_pins
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, Manifest, parse
from modelpack.oci.tar import TarEntry, tar_chunks
from modelpack.record.record import LockSummary, Record
from modelpack.release.diff import diff_records
from modelpack.release.view import load_release
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.container import wait_ready

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SERVE = Path(modelpack.__file__).resolve().parent / "serve"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
MB = 1_000_000
ONNX_ONLY = ("onnxruntime", "protobuf", "flatbuffers")


def _image(store: LayoutStore, tag: str) -> Manifest:
    index = parse(store.get_manifest(tag).raw)
    assert isinstance(index, Index)
    image = parse(store.get_manifest(index.manifests[0].digest).raw)
    assert isinstance(image, Manifest)
    return image


def _deps_packages(store: LayoutStore, digest: str) -> set[str]:
    """Top-level folders of the deps layer's site-packages (tarfile reads the gzip transparently)."""
    with tarfile.open(store.blob_path(digest)) as tf:
        names = tf.getnames()
    prefix = "opt/modelpack/deps/"
    return {n[len(prefix) :].split("/", 1)[0] for n in names if n.startswith(prefix) and n != prefix}


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.engine
def test_custom_handler_image_is_weights_user_deps_and_a_small_runtime(
    image_store: LayoutStore, docker_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    built = api.build(
        Targets(store_path=image_store.root),
        proj,
        image=True,
        base=docker_engine.base_ref,
        version="0.1.0-size",
        environ=EPOCH,
    )
    assert built.image is not None
    image = _image(image_store, built.tag)
    ours = image.layers[len(built.image.base.layers) :]
    deps, runtime = ours[0], ours[1]
    assert deps.media_type == runtime.media_type == mt.OCI_LAYER_GZIP
    # the weights and code are still the bundle's own uncompressed blobs (uploaded once)
    bundle_blobs = {d.digest for d in built.bundle.layers if d.media_type != mt.RECORD}
    assert {d.digest for d in ours[2:-1]} <= bundle_blobs
    assert all(d.media_type == mt.OCI_LAYER_TAR for d in ours[2:])
    installed = _deps_packages(image_store, deps.digest)
    assert {"numpy", "uvicorn", "orjson"} <= installed
    assert not {p for p in installed if p.split("-")[0] in ONNX_ONLY}, installed

    # image minus base <= weights + the user's deps (as installed) + 10 MB
    user_pins = built.bundle.lock.pins(wheels.TargetPlatform().marker_environment())
    user_tree = tmp_path / "user-deps"
    wheels.install_tree(
        image_store.root / "cache" / "wheels",
        wheels.requirements_text(user_pins),
        user_tree,
        wheels.TargetPlatform(),
    )
    weights = sum(f.size for f in built.bundle.record.files if f.path.startswith("models/"))
    assert sum(d.size for d in ours) <= weights + _du(user_tree) + 10 * MB

    # the release's record names the runtime's own packages for this handler, and only those
    record = load_release(image_store, built.tag, layers=False).record
    assert record.runtime == runtime_pins("handler:LinearModel")
    assert "onnxruntime" not in record.runtime and record.runtime["uvicorn"]


@pytest.mark.engine
def test_onnx_handler_image_has_the_onnx_runtime(image_store: LayoutStore, docker_engine) -> None:  # type: ignore[no-untyped-def]
    built = api.build(
        Targets(store_path=image_store.root), EXAMPLES / "iris-onnx", image=True, base=docker_engine.base_ref,
        version="1.0.0-size", environ=EPOCH,
    )  # fmt: skip
    assert built.image is not None
    deps = built.image.layers[0]
    assert deps.media_type == mt.OCI_LAYER_GZIP
    assert {"onnxruntime", "google", "flatbuffers"} <= _deps_packages(image_store, deps.digest)
    assert load_release(image_store, built.tag, layers=False).record.runtime["onnxruntime"] == "1.32.0"


@pytest.mark.engine
def test_a_lock_missing_a_dependency_is_refused_naming_both(
    image_store: LayoutStore, docker_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    # python-dateutil's METADATA requires six, which this lock leaves out
    (proj / "requirements.lock").write_text("numpy==2.4.6\npython-dateutil==2.9.0.post0\n")
    with pytest.raises(InputError) as err:
        api.build(
            Targets(store_path=image_store.root),
            proj,
            image=True,
            base=docker_engine.base_ref,
            version="9.9.8",
            environ=EPOCH,
        )
    assert "six (required by python-dateutil 2.9.0.post0: six>=1.5)" in err.value.message
    assert "requirements.lock" in err.value.message and "pin six" in (err.value.hint or "")
    # with six pinned the same project builds
    (proj / "requirements.lock").write_text("numpy==2.4.6\npython-dateutil==2.9.0.post0\nsix==1.17.0\n")
    ok = api.build(
        Targets(store_path=image_store.root),
        proj,
        image=True,
        base=docker_engine.base_ref,
        version="9.9.8",
        environ=EPOCH,
    )
    assert ok.image is not None


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", meta)


def test_completeness_follows_extras_and_the_image_platform(tmp_path: Path) -> None:
    _wheel(
        tmp_path,
        "app",
        "1.0",
        ["lib[fast]>=2", "winonly; sys_platform == 'win32'", "old; python_version<'3.9'"],
    )
    _wheel(tmp_path, "lib", "2.1", ["accel; extra == 'fast'", "docs-tool; extra == 'docs'"])
    _wheel(tmp_path, "accel", "0.3", [])
    target = wheels.TargetPlatform()
    wheels.check_complete(tmp_path, {"app": "1.0", "lib": "2.1", "accel": "0.3"}, target)
    with pytest.raises(
        InputError, match=r"accel \(required by lib 2.1 \(extras fast\): accel; extra == \"fast\"\)"
    ):
        wheels.check_complete(tmp_path, {"app": "1.0", "lib": "2.1"}, target)
    _wheel(tmp_path, "lib", "1.5", [])
    with pytest.raises(InputError, match=r"lib 1.5 does not satisfy app 1.0: lib\[fast\]>=2"):
        wheels.check_complete(tmp_path, {"app": "1.0", "lib": "1.5"}, target)


def test_gzip_layers_are_deterministic_and_keep_the_tar_digest(tmp_path: Path) -> None:
    entries = [TarEntry.from_bytes("opt/modelpack/deps/x.py", b"print('x')\n" * 5000)]
    tar = b"".join(tar_chunks(entries))
    one = gzlayer.store_gzip_layer(LayoutStore(tmp_path / "a"), tar_chunks(entries))
    two = gzlayer.store_gzip_layer(
        LayoutStore(tmp_path / "b"), [tar[i : i + 777] for i in range(0, len(tar), 777)]
    )
    assert one == two
    assert one.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    blob = (tmp_path / "a" / "blobs" / "sha256" / one.descriptor.digest[7:]).read_bytes()
    assert blob[4:8] == b"\0\0\0\0" and not blob[3] & 0x08  # gzip mtime 0, no file name
    assert one.descriptor.size == len(blob) < len(tar) // 10
    assert b"".join(gzlayer.gunzip([blob])) == tar
    with pytest.raises(InputError, match="before its end marker"):
        b"".join(gzlayer.gunzip([blob[: len(blob) // 2]]))


def test_diff_shows_runtime_packages_change() -> None:
    lock = LockSummary(
        "code/requirements.lock", "sha256:" + "a" * 64, "requirements", "3.11", {"numpy": "2.4.6"}
    )
    old = Record("m", "1.0.0", "2026-01-01T00:00:00Z", lock=lock,
                 runtime={"uvicorn": "0.54.0", "onnxruntime": "1.32.0", "numpy": "2.0.0"})  # fmt: skip
    new = Record(
        "m", "1.0.1", "2026-01-01T00:00:00Z", lock=lock, runtime={"uvicorn": "0.55.0", "numpy": "2.0.0"}
    )
    assert Record.from_bytes(old.to_bytes()) == old
    changes = {c.key: (c.old, c.new) for c in diff_records(old, new).packages}
    # the user's lock wins for numpy, as in the image; the runtime's own packages show as they change
    assert changes == {"uvicorn": ("0.54.0", "0.55.0"), "onnxruntime": ("1.32.0", None)}
    # a record with no runtime (the bundle's own copy) reads and writes as before
    assert "runtime" not in Record("m", "1", "2026-01-01T00:00:00Z").to_json()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_a_custom_handler_serves_with_only_the_base_runtime_lock(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    lock = SERVE / "requirements.lock"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(lock)], check=True, timeout=600
    )
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, f"requirements.lock misses a dependency: {check.stdout}"
    no_onnx = subprocess.run([python, "-c", "import onnxruntime"], capture_output=True, timeout=60)
    assert no_onnx.returncode != 0
    # the runtime layer as the image has it: modelpack/__init__.py and modelpack/serve/**
    layer = tmp_path / "runtime" / "modelpack"
    layer.mkdir(parents=True)
    shutil.copy2(SERVE.parent / "__init__.py", layer / "__init__.py")
    shutil.copytree(SERVE, layer / "serve", ignore=shutil.ignore_patterns("__pycache__"))
    example = EXAMPLES / "custom-handler"
    config = tmp_path / "serving.json"
    serving = {"name": "house-prices", "version": "0.1.0", "handler": "handler:LinearModel"}
    config.write_text(json.dumps({**serving, "model_dir": str(example), "code_dir": str(example)}))
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "MODELPACK_SERVING_CONFIG": str(config),
           "PYTHONPATH": str(layer.parent)}  # fmt: skip
    with (tmp_path / "log").open("wb") as log:
        proc = subprocess.Popen([python, "-m", "modelpack.serve", "--host", "127.0.0.1"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_ready(url, 60, alive=lambda: proc.poll() is None), (tmp_path / "log").read_text()
        body = {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [3, 80, 10]}]}
        response = httpx.post(f"{url}/v2/models/house-prices/infer", json=body, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [242.5]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
