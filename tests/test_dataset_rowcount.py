"""Dataset statistics counted from the hasher's bytes (RowCounter) agree with the csv module's, or step
aside; an unchanged file's statistics come from the stat cache on the next build (issue 26 item 5)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpack.dataset.artifact import DatasetInput, build_dataset
from modelpack.record import datastats
from modelpack.record.datastats import RowCounter, file_stats
from modelpack.store.layout import LayoutStore
from modelpack.store.statcache import StatCache


def _counted(rel: str, data: bytes, cuts: list[int]) -> object:
    c = RowCounter(rel)
    at = 0
    for cut in [*sorted({min(max(x, 0), len(data)) for x in cuts}), len(data)]:
        c.feed(memoryview(bytearray(data[at:cut])))  # views of whole buffers, as the hasher's ring gives
        at = cut
    return c.result()


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(
        st.sampled_from(
            [b"a", b"b,c", b",", b"\n", b"\n", b"\r", b'"', b"\xc3\xa9", b"\xc3", b"\0", b"x" * 7]
        ),
        max_size=40,
    ).map(b"".join),
    cuts=st.lists(st.integers(0, 80), max_size=4),
    rel=st.sampled_from(["d.csv", "d.tsv"]),
)
def test_fast_count_agrees_with_csv_or_steps_aside(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, cuts: list[int], rel: str
) -> None:
    path = tmp_path_factory.mktemp("rc") / rel
    path.write_bytes(data)
    got = _counted(rel, data, cuts)
    if got is not None:
        assert got == file_stats(rel, path, None)


@pytest.mark.parametrize(
    "data",
    [
        b"x,y,label\n1,2,cat\n3,4,dog\n",
        b"x,y,label\n1,2,cat\n3,4,dog",  # no newline at the end
        "name,city\nAnaïs,Orléans\n".encode(),  # UTF-8 beyond ASCII, cut inside a character below
        b"x\n",
        b"",
    ],
)
def test_plain_files_are_counted_without_csv(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(data)
    for cuts in ([], [1], [len(data) - 3], [13, 14]):
        got = _counted("d.csv", data, cuts)
        assert got is not None and got == file_stats("d.csv", path, None)


def test_unchanged_files_are_not_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.csv").write_bytes(b'x,"y"\n1,2\n')  # a quote: csv must read it
    (root / "b.jsonl").write_bytes(b'{"x": 1}\n')
    (root / "c.csv").write_bytes(b"x,y\n1,2\n3,4\n")
    time.sleep(0.15)  # past the stat cache's racy window (statcache.RACY_NS), so it keeps answers
    store = LayoutStore(tmp_path / "store")
    given_ = DatasetInput(name="acme/d", version="v1", who="t")
    parsed: list[str] = []
    real = datastats.file_stats

    def spy(rel: str, path: Path, label: str | None) -> object:
        parsed.append(rel)
        return real(rel, path, label)

    monkeypatch.setattr("modelpack.dataset.artifact.file_stats", spy)
    with StatCache(tmp_path / "cache.db") as cache:
        first = build_dataset(store, cache, root, given_, environ={})
        assert sorted(parsed) == ["a.csv", "b.jsonl"]  # c.csv was counted in the hashing read
        parsed.clear()
        second = build_dataset(store, cache, root, given_, environ={})
        assert parsed == []
    assert first.record.to_bytes() == second.record.to_bytes()
    assert {s.path: s.rows for s in first.record.stats} == {"a.csv": 1, "b.jsonl": 1, "c.csv": 2}
