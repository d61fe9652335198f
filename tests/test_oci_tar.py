"""Deterministic streaming tar layers and safe extraction, on real files."""

from __future__ import annotations

import io
import os
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.hostile_tar import hostile_tar

from modelpack.errors import InputError
from modelpack.oci import digest
from modelpack.oci.tar import (
    TarEntry,
    entries_from,
    layer_digest,
    source_date_epoch,
    tar_chunks,
    tar_size,
    with_parents,
)
from modelpack.oci.tarread import ChunkReader
from modelpack.oci.untar import safe_extract
from modelpack.store.statcache import StatCache

LONG = "d" * 60 + "/" + "e" * 70 + "/" + "f" * 150 + ".bin"  # > 256 bytes: no USTAR prefix split fits


def _tree(root: Path, mtime: int, umask: int) -> Path:
    old = os.umask(umask)
    try:
        (root / "model" / "sub").mkdir(parents=True)
        (root / "model" / "w.bin").write_bytes(os.urandom(0) + b"w" * 3000)
        (root / "model" / "sub" / "config.json").write_text('{"a": 1}')
        (root / "model" / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(root / "model" / "run.sh", 0o700)
        (root / "model" / "ünïcode.txt").write_text("x")
        (root / "model" / "latest.bin").symlink_to("w.bin")
        (root / "code").mkdir()
        (root / "code" / "handler.py").write_text("def predict(x):\n    return x\n")
    finally:
        os.umask(old)
    for p in [*root.rglob("*"), root]:
        os.utime(p, (mtime, mtime), follow_symlinks=False)
    return root


def _plan(root: Path) -> list[TarEntry]:
    entries = entries_from([(root / "model", "models"), (root / "code", "code")])
    extra = [TarEntry.from_bytes(LONG, b"long name"), TarEntry.from_bytes("models/x/y.json", b"{}")]
    return with_parents([*entries, *extra])


def _bytes(entries: list[TarEntry], mtime: int = 0) -> bytes:
    return b"".join(tar_chunks(entries, mtime))


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", 1_000_000, 0o022)
    b = _tree(tmp_path / "b", 2_000_000, 0o077)
    ta, tb = _bytes(_plan(a), 1700000000), _bytes(_plan(b), 1700000000)
    assert ta == tb
    assert digest.of_bytes(ta) == layer_digest(_plan(b), 1700000000)[0]
    assert len(ta) == tar_size(_plan(a), 1700000000)
    assert _bytes(_plan(a), 0) != ta  # the mtime argument is what lands in the headers


def test_tarfile_reads_it_back_with_fixed_metadata(tmp_path: Path) -> None:
    root = _tree(tmp_path, 1_234_567, 0o002)
    data = _bytes(_plan(root), 42)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert list(members) == sorted(members)
        assert {"models", "models/sub", "models/x", "code", "d" * 60}.issubset(members)
        for m in members.values():
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 42)
            assert "mtime" not in m.pax_headers and "atime" not in m.pax_headers
        assert members["models/w.bin"].mode == 0o644
        assert members["models/run.sh"].mode == 0o755
        assert members["models/sub"].isdir() and members["models/sub"].mode == 0o755
        assert members["models/latest.bin"].issym() and members["models/latest.bin"].linkname == "w.bin"
        assert members["models/ünïcode.txt"].isfile()
        assert tf.extractfile(members[LONG]).read() == b"long name"  # type: ignore[union-attr]
        assert tf.extractfile(members["models/w.bin"]).read() == b"w" * 3000  # type: ignore[union-attr]


def test_size_is_exact_for_odd_sizes_and_empty(tmp_path: Path) -> None:
    for n in (0, 1, 511, 512, 513, (1 << 20) + 7):
        entries = [TarEntry.from_bytes("f", b"z" * n)]
        assert tar_size(entries) == len(_bytes(entries))
    assert tar_size([]) == len(_bytes([])) == 1024


def test_inputs_are_sorted_and_checked(tmp_path: Path) -> None:
    one = [TarEntry.from_bytes("b", b"1"), TarEntry.from_bytes("a", b"2")]
    assert _bytes(one) == _bytes(list(reversed(one)))
    with pytest.raises(InputError, match="two entries"):
        _bytes([TarEntry.from_bytes("a", b"1"), TarEntry.from_bytes("a", b"2")])
    for bad in ("/abs", "../up", "a/../b", "a//b", "", "./a"):
        with pytest.raises(InputError):
            TarEntry.from_bytes(bad, b"")
    with pytest.raises(InputError, match="mtime"):
        tar_size([], mtime=-1)
    with pytest.raises(InputError, match="does not exist"):
        entries_from([(tmp_path / "missing", "x")])


def test_symlink_outside_and_special_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    d = tmp_path / "d"
    d.mkdir()
    (d / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(InputError, match="outside"):
        entries_from([(d, "models")])
    (d / "escape").unlink()
    os.mkfifo(d / "pipe")
    with pytest.raises(InputError, match="special file"):
        entries_from([(d, "models")])
    (d / "pipe").unlink()
    with pytest.raises(InputError, match="two inputs"):
        (d / "f").write_text("1")
        entries_from([(d / "f", "models/f"), (d / "f", "models/f")])


def test_file_that_changes_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * (3 << 20))
    entries = entries_from([(f, "models/w.bin")])
    chunks = tar_chunks(entries)
    next(chunks), next(chunks)  # header, then the first MiB
    with open(f, "ab") as out:
        out.write(b"more")
    with pytest.raises(InputError, match="changed while it was read"):
        list(chunks)
    # Changed between planning and reading: refused before a byte of content goes out.
    with pytest.raises(InputError, match="changed while it was read"):
        list(tar_chunks(entries))


@pytest.mark.slow
def test_big_file_streams_in_constant_memory_and_caches(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: cheap to make, still 1 GiB to read and hash
    entries = entries_from([(big, "models/big.bin")])
    cache = StatCache(tmp_path / "stat.sqlite")
    tracemalloc.start()
    try:
        cold = layer_digest(entries, cache=cache)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert cold[1] == tar_size(entries) > 1 << 30
    read_before = _bytes_read()
    warm = layer_digest(entries_from([(big, "models/big.bin")]), cache=StatCache(tmp_path / "stat.sqlite"))
    assert _bytes_read() - read_before < 1 << 20  # the cache answered: no GiB read (not a timing)
    assert warm == cold
    os.truncate(big, (1 << 30) - 1)  # any change misses the cache
    assert layer_digest(entries_from([(big, "models/big.bin")]), cache=cache) != cold


# --- safe_extract -------------------------------------------------------------------------------------


def _outside(tmp_path: Path, dest: Path) -> set[Path]:
    return {p for p in tmp_path.rglob("*") if dest not in p.parents and p != dest}


def test_extract_round_trip_in_chunks_and_from_a_file(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src", 5, 0o022)
    entries = [e for e in _plan(root) if e.kind != "symlink"]  # layers hold none: see the next test
    before = time.time()
    names = safe_extract(tar_chunks(entries), tmp_path / "out")
    assert names == sorted(e.arcname for e in entries)
    out = tmp_path / "out"
    assert (out / "models/w.bin").read_bytes() == b"w" * 3000
    # not the source's (5); the header's 0 means "no time", so the file keeps when it was written, not 1970
    assert os.stat(out / "models/w.bin").st_mtime >= before - 2
    dated = safe_extract(tar_chunks(entries, 1_700_000_000), tmp_path / "dated")
    assert dated and os.stat(tmp_path / "dated/models/w.bin").st_mtime == 1_700_000_000  # a header's time
    assert (out / LONG).read_bytes() == b"long name"
    assert os.stat(out / "models/run.sh").st_mode & 0o777 == 0o755
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    # the same bytes from a file object, into a second folder: identical tree
    safe_extract(io.BytesIO(_bytes(entries)), tmp_path / "out2")
    assert sorted(p.relative_to(tmp_path / "out2") for p in (tmp_path / "out2").rglob("*")) == sorted(
        p.relative_to(out) for p in out.rglob("*")
    )


@pytest.mark.parametrize(
    "members",
    [
        [("../evil", "file", b"x")],
        [("/abs/evil", "file", b"x")],
        [("a/../../evil", "file", b"x")],
        [("link", "sym", "/etc"), ("link/evil", "file", b"x")],
        [("link", "sym", "../.."), ("ok", "file", b"x")],
        [("hard", "hard", "/etc/passwd")],
        [("hard", "hard", "../outside.txt")],
        [("pipe", "fifo", "")],
        [("tty", "chr", "")],
        [("a", "sym", "b/.."), ("b", "sym", "."), ("a/evil", "file", b"x")],
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-dir", "symlink-up", "hardlink-abs",
         "hardlink-up", "fifo", "chardev", "symlink-chain"],
)  # fmt: skip
def test_hostile_tars_are_refused(tmp_path: Path, members: list[tuple[str, str, bytes | str]]) -> None:
    (tmp_path / "outside.txt").write_text("keep")
    dest = tmp_path / "dest"
    before = _outside(tmp_path, dest)
    with pytest.raises(InputError):
        safe_extract(io.BytesIO(hostile_tar(*members)), dest)
    assert _outside(tmp_path, dest) == before
    assert (tmp_path / "outside.txt").read_text() == "keep"
    assert not any(p.name in ("evil", "pipe", "tty") for p in dest.rglob("*"))


def test_existing_files_need_force(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "f").write_text("old")
    tar = hostile_tar(("f", "file", b"new"))
    with pytest.raises(InputError, match="already exists"):
        safe_extract(io.BytesIO(tar), dest)
    assert (dest / "f").read_text() == "old"
    assert safe_extract(io.BytesIO(tar), dest, force=True) == ["f"]
    assert (dest / "f").read_text() == "new"


def test_garbage_is_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a valid tar"):
        safe_extract([b"x" * 700], tmp_path / "d")


def test_source_date_epoch() -> None:
    assert source_date_epoch({}) == 0
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    for bad in ("yesterday", "-5", "1.5", str(8**11)):
        with pytest.raises(InputError):
            source_date_epoch({"SOURCE_DATE_EPOCH": bad})


_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\0"),
    min_size=1,
    max_size=120,
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(
    files=st.dictionaries(
        st.lists(_segment, min_size=1, max_size=3).map("/".join),
        st.tuples(st.binary(max_size=2000), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    mtime=st.integers(min_value=0, max_value=8**11 - 1),
)
def test_any_names_and_sizes_round_trip(files: dict[str, tuple[bytes, bool]], mtime: int) -> None:
    names = set(files)
    if any(n.startswith(m + "/") for n in names for m in names):
        return  # a file cannot also be a folder
    entries = with_parents(TarEntry.from_bytes(n, data, executable=x) for n, (data, x) in files.items())
    data = _bytes(entries, mtime)
    assert len(data) == tar_size(entries, mtime)
    assert data == _bytes(list(reversed(entries)), mtime)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            assert m.mtime == mtime and m.uid == 0 and m.uname == ""
            if m.isfile():
                content, executable = files[m.name]
                assert tf.extractfile(m).read() == content  # type: ignore[union-attr]
                assert m.mode == (0o755 if executable else 0o644)
        assert {m.name for m in tf.getmembers() if m.isfile()} == names


def test_chunk_reader_reads_across_chunk_boundaries_and_to_the_end() -> None:
    reader = ChunkReader(iter([b"abc", b"", b"defgh", b"ij"]))
    assert reader.read(2) == b"ab"
    assert reader.read(4) == b"cdef"  # spans an empty chunk and the next one
    assert reader.read(0) == b""
    assert reader.read(-1) == b"ghij"
    assert reader.read(5) == b"" and reader.read() == b""


def _bytes_read() -> int:
    """Bytes this process has read through read(2) so far (Linux): what a cache hit must not do, counted
    rather than timed, so the check holds on a slow or busy machine too."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no rchar")
