"""The serving image and the release index: built daemonless, pushed, pulled and run by a real engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import support.schemacheck as schemacheck

from modelpack import api
from modelpack.image.config import NONROOT
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, Manifest, parse
from modelpack.record.cases import load_cases
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.container import serving_container

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@dataclass(frozen=True)
class Built:
    store: LayoutStore
    result: api.BuildResult
    base_ref: str


@pytest.fixture(scope="session")
def iris(image_store: LayoutStore, docker_engine) -> Built:  # type: ignore[no-untyped-def]
    result = api.build(
        Targets(store_path=image_store.root),
        EXAMPLES / "iris-onnx",
        image=True,
        base=docker_engine.base_ref,
        environ=EPOCH,
    )
    return Built(image_store, result, docker_engine.base_ref)


def _listeners(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on `port`, from /proc/net/tcp (state 0A = LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
    return found


def _doc(store: LayoutStore, ref: str) -> Manifest | Index:
    raw = store.get_manifest(ref)
    return parse(raw.raw, raw.media_type)


@pytest.mark.engine
def test_release_index_holds_image_and_bundle(iris: Built) -> None:
    index = _doc(iris.store, "iris-onnx:1.0.0")
    assert isinstance(index, Index)
    schemacheck.validate_index(json.loads(index.to_bytes()))
    image_desc, bundle_desc = index.manifests
    assert str(image_desc.platform) == "linux/amd64"
    assert str(bundle_desc.platform) == "unknown/unknown"
    assert bundle_desc.artifact_type == mt.MODEL_ARTIFACT
    assert index.annotations[mt.ANN_VERSION] == "1.0.0"
    assert json.loads(index.annotations[mt.ANN_RECORD])["name"] == "iris-onnx"

    image = _doc(iris.store, image_desc.digest)
    bundle = _doc(iris.store, bundle_desc.digest)
    assert isinstance(image, Manifest) and isinstance(bundle, Manifest)
    schemacheck.validate_manifest(json.loads(image.to_bytes()))
    config = json.loads(iris.store.read_blob_bytes(image.config.digest))
    schemacheck.validate_config(config)
    assert config["config"]["User"] == NONROOT
    assert config["config"]["Cmd"] == ["python3", "-m", "modelpack.serve"]
    assert len(config["rootfs"]["diff_ids"]) == len(image.layers)
    # the weights and code layers ARE the bundle's blobs: pushing both uploads them once
    bundle_blobs = {
        d.digest for d in bundle.layers if d.media_type in (mt.MODEL_WEIGHT_TAR, mt.MODEL_CODE_TAR)
    }
    assert bundle_blobs <= {d.digest for d in image.layers}
    # base layers are referenced, not copied into the store
    assert image.annotations["org.opencontainers.image.base.name"] == iris.base_ref
    assert not iris.store.has_blob(image.layers[0].digest)


def _diff_ids(store: LayoutStore, result: api.BuildResult) -> list[str]:
    assert result.image is not None
    config = json.loads(store.read_blob_bytes(result.image.config.digest))
    ids: list[str] = config["rootfs"]["diff_ids"]
    return ids


@pytest.mark.engine
def test_image_build_is_reproducible(iris: Built, tmp_path: Path) -> None:
    # two checkouts outside git (the record carries git state), in different dirs, with different mtimes;
    # the second store builds its deps layer afresh, the first reuses the session's
    builds = []
    for n, mtime in ((1, 1_000_000_000), (2, 1_600_000_000)):
        copy = tmp_path / f"proj{n}"
        shutil.copytree(EXAMPLES / "iris-onnx", copy)
        for p in copy.rglob("*"):
            os.utime(p, (mtime, mtime))
        store = iris.store if n == 1 else LayoutStore(tmp_path / "other-store")
        # its own version: the session's iris-onnx:1.0.0 tag must keep naming the fixture's build
        r = api.build(
            Targets(store_path=store.root),
            copy,
            image=True,
            base=iris.base_ref,
            environ=EPOCH,
            version="0.0.0-repro",
        )
        builds.append((r, _diff_ids(store, r)))
    (first, first_ids), (second, second_ids) = builds
    # reproducible content: the bundle, and every image layer's uncompressed digest (what gzip would
    # change on another zlib build)
    assert first.bundle.manifest.digest == second.bundle.manifest.digest
    assert first_ids == second_ids
    # and on one machine (one zlib build) the compressed layers, hence the release digest, are the same
    assert first.digest == second.digest


@pytest.mark.engine
def test_push_pull_run_serves_the_golden_cases(iris: Built, registry, repo: str, docker_engine) -> None:  # type: ignore[no-untyped-def]
    dest = f"{registry.host}/{repo}"
    with Targets(store_path=iris.store.root) as targets:
        _r = api.push(targets, dest, source="iris-onnx:1.0.0")
        first, pushed = _r.copy, _r.destination
        _r = api.push(targets, dest, source="iris-onnx:1.0.0")
        again, _ = _r.copy, _r.destination
    assert pushed == f"{dest}:1.0.0"
    assert first.digest == iris.result.digest
    assert first.bytes_copied > 0 and again.bytes_copied == 0 and again.blobs_copied == 0
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{pushed}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert raw == iris.store.get_manifest("iris-onnx:1.0.0").raw

    cases = load_cases(EXAMPLES / "iris-onnx" / "cases.json")
    with (
        serving_container(pushed, env={"MODELPACK_INDEX_DIGEST": first.digest}) as running,
        httpx.Client() as http,
    ):
        meta = http.get(f"{running.url}/metadata").json()
        assert meta["index_digest"] == first.digest
        bundle_digest = _doc(iris.store, "iris-onnx:1.0.0").manifests[1].digest  # type: ignore[union-attr]
        assert meta["bundle_digest"] == bundle_digest
        for case in cases:
            response = http.post(f"{running.url}/v2/models/iris-onnx/infer", json=case.request())
            assert response.status_code == 200, response.text
            assert case.compare(response.json()) == (), case.name
        user = docker_engine.client.containers.get(running.container_id).attrs["Config"]["User"]
        assert user == NONROOT
        port = int(running.url.rsplit(":", 1)[1])
        assert _listeners(port) == {"127.0.0.1"}  # host network, but bound to loopback only


@pytest.mark.engine
def test_a_code_change_uploads_only_small_layers(
    image_store: LayoutStore, docker_engine, registry, repo: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    dest = f"{registry.host}/{repo}"
    with Targets(store_path=image_store.root) as targets:
        v1 = api.build(
            Targets(store_path=image_store.root),
            proj,
            image=True,
            base=docker_engine.base_ref,
            version="1.0.0",
            environ=EPOCH,
        )
        api.push(targets, dest, source=v1.tag)
        handler = proj / "handler.py"
        handler.write_text(handler.read_text() + "\n# a one-line code change\n")
        v2 = api.build(
            Targets(store_path=image_store.root),
            proj,
            image=True,
            base=docker_engine.base_ref,
            version="1.0.1",
            environ=EPOCH,
        )
        _r = api.push(targets, dest, source=v2.tag)
        result, _ = _r.copy, _r.destination
    assert v2.image is not None and v1.image is not None
    assert v2.image.deps_layer_reused
    big = {d.digest for d in v1.image.layers if d.size > 64 * 1024}  # deps, runtime, weights
    assert big and big <= {d.digest for d in v2.image.layers}
    assert result.bytes_copied < 64 * 1024, result


@pytest.mark.engine
def test_no_wheel_for_the_target_is_a_clear_error(
    image_store: LayoutStore, docker_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    # an sdist-only package: the daemonless builder installs binary wheels only
    (proj / "requirements.lock").write_text("numpy==2.4.6\nantlr4-python3-runtime==4.9.3\n")
    from modelpack.errors import BuildError

    with pytest.raises(BuildError, match="antlr4-python3-runtime") as err:
        api.build(
            Targets(store_path=image_store.root),
            proj,
            image=True,
            base=docker_engine.base_ref,
            version="9.9.9",
            environ=EPOCH,
        )
    assert "--builder docker" in str(err.value)
