"""The stat cache: hits without reading, misses on any change, safe with two processes and corruption."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from modelpack.errors import InputError
from modelpack.oci.filestat import FileStat, file_key
from modelpack.store.statcache import RACY_NS, StatCache


def _later(seconds: float = 5) -> int:
    return time.time_ns() + int(seconds * 1e9)


def test_file_digest_hits_without_reading(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc" * 1000)
    cache = StatCache(tmp_path / "c.sqlite", clock=_later)
    expected = ("sha256:" + hashlib.sha256(b"abc" * 1000).hexdigest(), 3000)
    assert cache.file_digest(f) == expected
    # Prove the hit does not read: the cached value for this identity is what comes back.
    key = ["file-sha256", *file_key(f, FileStat.of(f))]
    cache.put(key, ["sha256:" + "0" * 64, 3000])
    assert cache.file_digest(f) == ("sha256:" + "0" * 64, 3000)


def test_any_change_misses(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"one")
    cache = StatCache(tmp_path / "c.sqlite", clock=_later)
    first = cache.file_digest(f)
    old = FileStat.of(f)
    f.write_bytes(b"two")  # same size, new content; a later tick than the first write, as in real life
    os.utime(f, ns=(old.mtime_ns + 10**9, old.mtime_ns + 10**9))
    assert cache.file_digest(f) != first
    os.replace(tmp_path / "w.bin", tmp_path / "w2.bin")
    (tmp_path / "w.bin").write_bytes(b"one")
    assert cache.file_digest(f) == first  # a recomputation, under a new inode


def test_racy_recent_files_are_not_stored(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"fresh")
    now = time.time_ns()
    cache = StatCache(tmp_path / "c.sqlite", clock=lambda: now)
    cache.file_digest(f)
    assert cache.get(["file-sha256", *file_key(f, FileStat.of(f))]) is None
    assert not cache.put(["k"], 1, stats=[FileStat.of(f)])
    later = StatCache(tmp_path / "c.sqlite", clock=lambda: FileStat.of(f).ctime_ns + RACY_NS + 1)
    assert later.put(["k"], 1, stats=[FileStat.of(f)])
    assert later.get(["k"]) == 1


def test_persisted_and_generic_values(tmp_path: Path) -> None:
    with StatCache(tmp_path / "cache" / "stat.sqlite") as c:
        assert c.put(["layer", ["a", 1]], {"digest": "sha256:x", "size": 5})
        assert c.get(["layer", ["a", 2]]) is None
    with StatCache(tmp_path / "cache" / "stat.sqlite") as c:
        assert c.get(["layer", ["a", 1]]) == {"digest": "sha256:x", "size": 5}


def test_errors_are_input_errors(tmp_path: Path) -> None:
    cache = StatCache(tmp_path / "c.sqlite")
    with pytest.raises(InputError, match="does not exist"):
        cache.file_digest(tmp_path / "nope")
    with pytest.raises(InputError, match="not a regular file"):
        cache.file_digest(tmp_path)


def test_corrupt_database_is_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    db.write_bytes(b"this is not sqlite" * 100)
    cache = StatCache(db)
    assert cache.get(["k"]) is None
    assert cache.put(["k"], [1, 2])
    assert cache.get(["k"]) == [1, 2]


def _writer(path: str, who: int, n: int) -> None:
    cache = StatCache(path)
    for i in range(n):
        assert cache.put([who, i], i)
        cache.get([1 - who, i])


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    db = str(tmp_path / "c.sqlite")
    StatCache(db).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, who, 300)) for who in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = StatCache(db)
    assert all(cache.get([who, i]) == i for who in (0, 1) for i in range(300))
