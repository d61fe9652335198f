"""A cold layer write hashes the layer and its files in two threads: same digests as hashing each once,
errors from either thread surface, and nothing is left half-written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelpack.bundle import layers
from modelpack.bundle.plan import LayerPlan
from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.layout import LayoutStore
from modelpack.oci.statcache import StatCache
from modelpack.oci.tar import entries_from, tar_chunks


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_two_thread_ingest_gives_the_digests_of_one_pass_each(tmp_path: Path) -> None:
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


def test_a_failure_in_the_second_thread_is_raised_and_leaves_no_temp_file(tmp_path: Path) -> None:
    def boom(_chunk: bytes) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), layers._Beside(boom) as beside:
        for _ in range(100):
            beside.put(b"x" * 4096)

    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(4 << 20))
    plan = LayerPlan(mt.MODEL_WEIGHT_TAR, tuple(entries_from([(src, "models/w.bin")])), "models/w.bin")
    src.write_bytes(os.urandom(4 << 20))  # changed after planning: the read refuses it
    store = LayoutStore(tmp_path / "store")
    with StatCache(tmp_path / "cache.sqlite") as cache, pytest.raises(InputError, match="changed"):
        layers.store_layer(store, cache, plan, 0)
    assert list((store.root / "blobs" / ".tmp").iterdir()) == []
