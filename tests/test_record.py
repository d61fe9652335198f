"""The record's typed fields read and write the JSON shape records already pushed carry, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpack.errors import ContentError, InputError
from modelpack.record.curves import ColumnSummary
from modelpack.record.files import read_bounded
from modelpack.record.git import GitInfo
from modelpack.record.record import PickleEntry, Record, SecurityInfo, ServingInfo, TestPlan

# Written by the code on main before the fields were typed (Mapping[str, Any] read by string key).
RECORDS = Path(__file__).parent / "fixtures" / "records"


@pytest.mark.parametrize(
    "name", ["full-2026-12.json", "minimal-no-latency.json", "bare.json", "with-history.json"]
)
def test_records_written_before_the_typed_fields_round_trip_bit_for_bit(name: str) -> None:
    raw = (RECORDS / name).read_bytes()
    assert Record.from_bytes(raw).to_bytes() == raw


def test_fields_read_as_types() -> None:
    rec = Record.from_bytes((RECORDS / "full-2026-12.json").read_bytes())
    assert rec.git == GitInfo("a" * 40, "main", "https://github.com/acme/iris", False)
    assert rec.tests == TestPlan("code/cases.json", ("accuracy >= 0.9", "latency_p95_ms < 50"), 100)
    assert rec.serving == ServingInfo("onnx", "models/model.onnx", 8080, "3.11", "onnx")
    assert rec.security == SecurityInfo(
        "modelpack.picklescan/1",
        (
            PickleEntry("models/m.pkl", ("posix.system",), dangerous=("posix.system",)),
            PickleEntry("models/t.pt", (), member="archive/data.pkl", error="truncated", unknown=("x.y",)),
        ),
        ("*", "posix.system"),
    )
    older = Record.from_bytes((RECORDS / "minimal-no-latency.json").read_bytes())
    assert older.tests == TestPlan(None, (), None) and older.security is None
    assert older.git is not None and older.git.branch is None and older.git.dirty
    bare = Record.from_bytes((RECORDS / "bare.json").read_bytes())
    assert (bare.git, bare.tests, bare.security, bare.serving) == (None, None, None, None)


def test_the_training_history_summary_reads_as_types_and_only_when_written() -> None:
    rec = Record.from_bytes((RECORDS / "with-history.json").read_bytes())
    assert rec.history is not None and (rec.history.x, rec.history.rows) == ("step", 4)
    loss, acc, lr = rec.history.columns
    assert loss == ColumnSummary("loss", 4, (0, 0.9), (30, 0.55), (20, 0.5), (0, 0.9), "lower")
    assert loss.best == (20, 0.5) and acc.best is None and lr.first is None
    for name in ("bare.json", "full-2026-12.json"):  # records without a history never grow the key
        rec = Record.from_bytes((RECORDS / name).read_bytes())
        assert rec.history is None and b'"history"' not in rec.to_bytes()
    broken = (RECORDS / "with-history.json").read_bytes().replace(b'"better":"lower"', b'"better":"up"')
    with pytest.raises(ContentError, match="malformed modelpack record"):
        Record.from_bytes(broken)


def test_a_build_time_git_info_records_only_what_the_record_keeps() -> None:
    built = GitInfo("c" * 40, "main", None, False, commit_time=1_700_000_000, tag="v1.0.0")
    rec = Record(name="m", version="1", created="2026-01-01T00:00:00Z", git=built.recorded())
    assert Record.from_bytes(rec.to_bytes()) == rec


def test_a_malformed_typed_field_is_a_content_error() -> None:
    """A record comes from a registry: malformed, it is a failure (exit 1), not the user's input error."""
    raw = (
        (RECORDS / "bare.json")
        .read_bytes()
        .replace(b'"recordVersion"', b'"serving":{"handler":"x"},"recordVersion"')
    )
    with pytest.raises(ContentError, match="malformed modelpack record") as e:
        Record.from_bytes(raw)
    assert e.value.exit_code == 1


def test_read_bounded_maps_every_failure_to_an_input_error_naming_the_file(tmp_path: Path) -> None:
    small = tmp_path / "m.json"
    small.write_bytes(b"x" * 1024)
    assert read_bounded(small, where="m.json", limit=1024, what="a metrics file") == b"x" * 1024
    with pytest.raises(InputError, match=r"^m\.json: larger than 0 MiB; is this really a metrics file\?$"):
        read_bounded(small, where="m.json", limit=1023, what="a metrics file")
    with pytest.raises(InputError, match=r"^d: is a directory, expected a lockfile$"):
        read_bounded(tmp_path, where="d", limit=10, what="a lockfile")
    with pytest.raises(InputError, match=r"^gone: no such lockfile") as e:
        read_bounded(tmp_path / "gone", where="gone", limit=9, what="x", missing="no such lockfile", hint="h")
    assert e.value.hint == "h"
