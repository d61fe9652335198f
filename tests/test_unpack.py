"""modelpack pull and unpack: byte-identical files, verified digests, nothing partial, nothing overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.clirun import run_cli
from support.release_fixtures import ENV, EXAMPLES, Pushed, pushed  # noqa: F401  (pushed is the fixture)

from modelpack import api
from modelpack.errors import DigestMismatchError, UsageError
from modelpack.oci import mediatypes as mt
from modelpack.release.view import load_release
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.unpack import ALL, parse_filter, unpack

# Where each source file of iris-onnx lands in an unpacked release.
IRIS_FILES = {
    "models/model.onnx": "model.onnx",
    "code/requirements.lock": "requirements.lock",
    "code/cases.json": "cases.json",
    "docs/README.md": "README.md",
}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_pull_then_unpack_gives_the_source_files(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    store = tmp_path / "store"
    ref = pushed.ref("1.1.0")
    result = run_cli("pull", ref, "--store", str(store), "--tag", "iris:1.1.0", "--json")
    assert result.returncode == 0, result.stderr
    pulled = json.loads(result.stdout)
    assert pulled["digest"] == pushed.digests["1.1.0"]
    assert LayoutStore(store).list_tags() == sorted([ref, "iris:1.1.0"])
    assert pulled["blobsCopied"] >= 5  # config, weights, code, docs, record
    again = run_cli("pull", ref, "--store", str(store), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["blobsCopied"] == 0

    dest = tmp_path / "out"
    unpacked = run_cli("unpack", "iris:1.1.0", str(dest), "--store", str(store))
    assert unpacked.returncode == 0, unpacked.stderr
    assert _files(dest) == set(IRIS_FILES)
    source = pushed.sources["1.1.0"]
    for inside, original in IRIS_FILES.items():
        assert (dest / inside).read_bytes() == (source / original).read_bytes(), inside
    assert not list(dest.glob(".modelpack-unpack-*"))


def test_unpack_remote_index_release_with_filter(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    dest = tmp_path / "model-only"
    ref = pushed.ref("0.1.0", pushed.index_repo)
    result = run_cli("unpack", ref, str(dest), "--filter", "model", "--json")
    assert result.returncode == 0, result.stderr
    assert _files(dest) == {"models/weights.json"}  # a weight config is part of "model"
    src = pushed.sources["index"]
    assert (dest / "models/weights.json").read_bytes() == (src / "weights.json").read_bytes()
    code = tmp_path / "code-only"
    assert run_cli("unpack", ref, str(code), "--filter", "code").returncode == 0
    assert (code / "code/handler.py").read_bytes() == (src / "handler.py").read_bytes()
    assert not (code / "models").exists()


def test_unpack_refuses_to_overwrite_unless_forced(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    dest = tmp_path / "out"
    ref = pushed.ref("1.0.0")
    assert run_cli("unpack", ref, str(dest)).returncode == 0
    (dest / "models/model.onnx").write_bytes(b"mine")
    (dest / "docs/README.md").unlink()
    refused = run_cli("unpack", ref, str(dest))
    assert refused.returncode == 2
    assert "already exists (and 2 more files)" in refused.stderr and "--force" in refused.stderr
    assert (dest / "models/model.onnx").read_bytes() == b"mine"
    assert not (dest / "docs/README.md").exists()  # refused before anything moved in
    assert not list(dest.glob(".modelpack-unpack-*"))
    forced = run_cli("unpack", ref, str(dest), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (dest / "models/model.onnx").read_bytes() == (pushed.sources["1.0.0"] / "model.onnx").read_bytes()
    assert (dest / "docs/README.md").is_file()


def test_unpack_will_not_write_through_a_link_leaving_dest(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    dest, outside = tmp_path / "out", tmp_path / "elsewhere"
    dest.mkdir()
    outside.mkdir()
    (dest / "models").symlink_to(outside)
    result = run_cli("unpack", pushed.ref("1.0.0"), str(dest), "--force")
    assert result.returncode == 2
    assert "leaves" in result.stderr
    assert list(outside.iterdir()) == []


def _tampered_store(tmp_path: Path, offset: int) -> tuple[LayoutStore, str]:
    store = LayoutStore(tmp_path / "store")
    tag = api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ=ENV).tag
    view = load_release(store, tag)
    assert view.bundle_manifest is not None
    weights = next(d for d in view.bundle_manifest.layers if d.media_type == mt.MODEL_WEIGHT_TAR)
    blob = store.blob_path(weights.digest)
    data = bytearray(blob.read_bytes())
    data[offset] ^= 0xFF  # same size, other bytes: only the digest can tell
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    return store, tag


@pytest.mark.parametrize("offset", [1024, 3], ids=["content", "tar-header"])
def test_tampered_blob_fails_and_leaves_nothing(tmp_path: Path, offset: int) -> None:
    store, tag = _tampered_store(tmp_path, offset)
    dest = tmp_path / "new-dir"
    result = run_cli("unpack", tag, str(dest), "--store", str(store.root))
    assert result.returncode == 1
    assert "hashes to" in result.stderr and result.stderr.count("\n") == 1
    assert not dest.exists()  # created for the unpack, removed again with nothing in it
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    with pytest.raises(DigestMismatchError):
        unpack(store, tag, existing)
    assert _files(existing) == {"keep.txt"}
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]  # no staging folder left


def test_unpack_of_a_layout_and_pull_from_it(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    layout = f"oci:{pushed.store.root}:iris-onnx:1.2.0"
    dest = tmp_path / "out"
    assert run_cli("unpack", layout, str(dest), "--filter", "docs,model").returncode == 0
    assert _files(dest) == {"models/model.onnx", "docs/README.md"}
    store = tmp_path / "store"
    pulled = run_cli("pull", layout, "--store", str(store))
    assert pulled.returncode == 0, pulled.stderr
    assert LayoutStore(store).list_tags() == ["iris-onnx:1.2.0"]  # a layout path is no ref.name


def test_unknown_release_and_bad_filter(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    missing = run_cli("unpack", pushed.ref("7.7.7"), str(tmp_path / "o"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "7.7.7" in missing.stderr
    assert not (tmp_path / "o").exists()
    pull_missing = run_cli("pull", pushed.ref("7.7.7"), "--store", str(tmp_path / "s"))
    assert pull_missing.returncode == 1 and "7.7.7" in pull_missing.stderr
    bad = run_cli("unpack", pushed.ref("1.0.0"), str(tmp_path / "o"), "--filter", "weights")
    assert bad.returncode == 2 and "model,code,docs,datasets" in bad.stderr


def test_parse_filter() -> None:
    assert parse_filter(None) == ALL
    assert parse_filter("code, model,code") == ("code", "model")
    for bad in (",", "model,exe"):
        with pytest.raises(UsageError):
            parse_filter(bad)
