"""`runs import --tensorboard`: event files written by tensorboard's own writer (what torch's SummaryWriter
uses), each folder a run with its scalars as curves."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from modelpack import api
from modelpack.targets import Targets


def _write(folder: Path, lr: float) -> None:
    writer = EventFileWriter(str(folder))
    for step in range(4):
        for tag, value in (("loss", 1.0 / (step + 1)), ("f1", 0.5 + lr * step)):
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(event_pb2.Event(wall_time=1_790_000_000.0 + step, step=step, summary=summary))
    writer.close()


def test_tensorboard_event_files_import_as_runs(registry, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _write(logs / "lr-0.01", 0.01)
    _write(logs / "lr-0.1", 0.1)
    repo = f"{registry.host}/acme/tb-runs"
    with Targets(store_path=tmp_path / "store") as targets:
        result = api.runs_import(targets, repo, tensorboard=logs)
        assert len(result.imported) == 2 and result.statuses == {"finished": 2}
        again = api.runs_import(targets, repo, tensorboard=logs)
        assert again.imported == result.imported
    with Targets(store_path=tmp_path / "fresh") as targets:
        listed = api.runs_ls(targets, repo, sort="f1").runs
        assert [s.tags for s in listed] == [("tensorboard=lr-0.1",), ("tensorboard=lr-0.01",)]
        assert listed[0].metrics["f1"] == pytest.approx(0.8, rel=1e-6) and listed[0].metrics["loss"] == 0.25
        shown = api.runs_show(targets, f"{repo}:{listed[0].id}", curves=True)
    assert shown.curves is not None and shown.curves["columns"] == ["f1", "loss"]
    assert [row[0] for row in shown.curves["rows"]] == [0, 1, 2, 3]
    assert shown.record.duration == 3.0 and shown.record.host.gpus == ()
