"""A cold layer write: one read gives the layer digest and every file's digest, and a failure leaves
nothing half-written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelpack.bundle import layers
from modelpack.bundle.plan import LayerPlan
from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.tar import entries_from, tar_chunks
from modelpack.store.layout import LayoutStore
from modelpack.store.statcache import StatCache


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_one_pass_gives_the_layer_and_file_digests(tmp_path: Path) -> None:
    files = {"a.bin": os.urandom(3 * (1 << 20) + 7), "b.json": b"{}", "c.bin": os.urandom(513)}
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    plan = LayerPlan(mt.MODEL_WEIGHT_TAR, tuple(entries_from([(src, "models")])), "models")
    store = LayoutStore(tmp_path / "store")
    with StatCache(tmp_path / "cache.sqlite") as cache:
        stored = layers.store_layer(store, cache, plan, 1700000000)
    expected = b"".join(tar_chunks(plan.entries, 1700000000))
    assert stored.descriptor.digest == _sha(expected)
    assert store.read_blob_bytes(stored.descriptor.digest) == expected
    assert {f.path: f.sha256 for f in stored.files} == {f"models/{n}": _sha(d) for n, d in files.items()}


def test_a_file_changed_while_read_leaves_no_temp_file(tmp_path: Path) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(4 << 20))
    plan = LayerPlan(mt.MODEL_WEIGHT_TAR, tuple(entries_from([(src, "models/w.bin")])), "models/w.bin")
    src.write_bytes(os.urandom(4 << 20))  # changed after planning: the read refuses it
    store = LayoutStore(tmp_path / "store")
    with StatCache(tmp_path / "cache.sqlite") as cache, pytest.raises(InputError, match="changed"):
        layers.store_layer(store, cache, plan, 0)
    assert list((store.root / "blobs" / ".tmp").iterdir()) == []
