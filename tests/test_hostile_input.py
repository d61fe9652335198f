"""Hostile input: any bytes as a manifest or index, any body sent to the real serving process, and releases
whose layers try to write outside the unpack folder or lie about their size."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.hostile_tar import hostile_tar
from support.serving import _body, _json, runtime

from modelpack import api
from modelpack.errors import ContentError, DigestMismatchError, InputError, ModelpackError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Manifest, parse
from modelpack.release.view import load_release
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.unpack import unpack

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {"SOURCE_DATE_EPOCH": "1700000000"}
DIGEST = "sha256:" + "a" * 64

# --- manifest and index parsing: ContentError or a value, nothing else ------------------------------------

_descriptor = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.sampled_from([mt.OCI_LAYER_TAR, mt.OCI_MANIFEST, mt.OCI_INDEX, ""]) | _json,
        "digest": st.sampled_from([DIGEST, "sha256:xyz", "md5:00", ""]) | _json,
        "size": st.integers(-(2**70), 2**70) | _json,
        "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | _json,
        "platform": st.fixed_dictionaries({}, optional={"os": _json, "architecture": _json}) | _json,
        "urls": _json,
        "artifactType": _json,
    },
)
_document = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.sampled_from([2, 1, "2", None]) | _json,
        "mediaType": st.sampled_from([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST]) | _json,
        "config": _descriptor | _json,
        "layers": st.lists(_descriptor, max_size=3) | _json,
        "manifests": st.lists(_descriptor, max_size=3) | _json,
        "subject": _descriptor | _json,
        "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | _json,
        "artifactType": _json,
    },
)


def _parses_or_content_error(raw: bytes, media_type: str | None) -> None:
    try:
        doc = parse(raw, media_type)
    except ContentError:  # malformed registry content: a failure (exit 1), never a crash
        return
    assert isinstance(doc, (Manifest, type(parse(b'{"schemaVersion":2,"manifests":[]}', mt.OCI_INDEX))))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), media_type=st.sampled_from([None, mt.OCI_MANIFEST, mt.OCI_INDEX, "x/y"]))
def test_any_bytes_parse_or_raise_content_error(raw: bytes, media_type: str | None) -> None:
    _parses_or_content_error(raw, media_type)


@settings(max_examples=250, deadline=None)
@given(doc=_document | _json, media_type=st.sampled_from([None, mt.OCI_MANIFEST, mt.OCI_INDEX]))
def test_manifest_like_json_parses_or_raises_content_error(doc: Any, media_type: str | None) -> None:
    _parses_or_content_error(json.dumps(doc).encode(), media_type)


def test_deep_nesting_is_a_content_error() -> None:
    for raw in (b"[" * 100_000, b'{"a":' * 100_000):
        with pytest.raises(ContentError):
            parse(raw)


# --- V2 infer bodies against the real runtime process ------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with runtime(tmp_path_factory.mktemp("hostile-serve")) as (url, _proc):
        yield url


_raw_body = st.binary(max_size=200) | (_body | _json).map(lambda b: json.dumps(b).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_raw_body, content_type=st.sampled_from(["application/json", "text/plain", "", "x/\u00e9"]))
def test_no_body_makes_the_real_runtime_answer_500(served: str, body: bytes, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type.isascii() else {}
    response = httpx.post(f"{served}/v2/models/iris/infer", content=body, headers=headers, timeout=10)
    assert response.status_code in (200, 400, 413, 415, 422), (response.status_code, response.text)
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)


def test_the_runtime_still_answers_after_the_hostile_bodies(served: str) -> None:
    request = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6.3, 3.3, 6.0, 2.5]}]
    }
    response = httpx.post(f"{served}/v2/models/iris/infer", json=request, timeout=10)
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [2]
    assert httpx.get(f"{served}/v2/health/ready", timeout=5).status_code == 200


# --- hostile layers fed to unpack -------------------------------------------------------------------


@pytest.fixture(scope="module")
def release_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[LayoutStore, str]:
    store = LayoutStore(tmp_path_factory.mktemp("hostile-release") / "store")
    return store, api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ=ENV).tag


def _with_layer(store: LayoutStore, tag: str, layer: bytes, name: str) -> str:
    """The release at `tag` with its weights layer replaced by `layer`, tagged `name`."""
    bundle = load_release(store, tag).bundle_manifest
    assert bundle is not None
    evil = store.put_blob_bytes(layer, mt.MODEL_WEIGHT_TAR)
    layers = tuple(evil if d.media_type == mt.MODEL_WEIGHT_TAR else d for d in bundle.layers)
    store.put_document(Manifest(config=bundle.config, layers=layers, artifact_type=bundle.artifact_type,
                                annotations=bundle.annotations), tag=name)  # fmt: skip
    return name


HOSTILE = {
    "dotdot": [("models/../../evil", "file", b"x")],
    "absolute": [("/tmp/modelpack-evil", "file", b"x")],
    "symlink-out": [("models/out", "sym", "../../outside"), ("models/out/evil", "file", b"x")],
    "symlink-abs": [("models/etc", "sym", "/etc")],
    "hardlink-out": [("models/pw", "hard", "/etc/passwd")],
    "hardlink-up": [("models/keep", "hard", "../outside/keep.txt")],
    "chardev": [("models/null", "chr", "")],
    "blockdev": [("models/disk", "blk", "")],
    "fifo": [("models/pipe", "fifo", "")],
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_unpack_refuses_hostile_layers_and_writes_nothing(
    release_store: tuple[LayoutStore, str], tmp_path: Path, kind: str
) -> None:
    store, tag = release_store
    ref = _with_layer(store, tag, hostile_tar(*HOSTILE[kind]), f"iris-onnx:{kind}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    dest = tmp_path / "work" / "dest"
    dest.parent.mkdir()
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(InputError):
        unpack(store, ref, dest)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # dest removed again, nothing added anywhere
    assert (outside / "keep.txt").read_text() == "keep"
    assert not Path("/tmp/modelpack-evil").exists()


@pytest.mark.parametrize("change", ["longer", "other-bytes"])
def test_layer_that_differs_from_its_descriptor_leaves_nothing(tmp_path: Path, change: str) -> None:
    store = LayoutStore(tmp_path / "store")
    tag = api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ=ENV).tag
    bundle = load_release(store, tag).bundle_manifest
    assert bundle is not None
    weights = next(d for d in bundle.layers if d.media_type == mt.MODEL_WEIGHT_TAR)
    path = store.blob_path(weights.digest)
    data = bytearray(path.read_bytes())
    path.chmod(0o644)
    if change == "longer":  # the tar still reads fine: only the size and digest can tell
        path.write_bytes(bytes(data) + b"\0" * 10240)
    else:
        data[-2000] ^= 0xFF
        path.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with pytest.raises(DigestMismatchError):
        unpack(store, tag, dest)
    assert not dest.exists()
    with pytest.raises(ModelpackError):  # and pushing it anywhere is refused too
        store2 = LayoutStore(tmp_path / "copy")
        from modelpack.oci.copy import copy_graph

        copy_graph(store, store2, tag)
