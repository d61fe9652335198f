"""Runs from TensorBoard event files, read with tensorboard's own reader (`runs import --tensorboard`).

TensorBoard's convention: each folder under the log directory that holds event files is a run. Each
becomes a finished run whose curves are its scalars by step (`add_scalar`'s simple values and TF2's scalar
tensors), its metrics their last values, its start and end the first and last event's wall time. Event
files hold no params, host or packages: those are recorded absent, with a note. The id comes from the
folder's path under the log directory, so importing again gives the same bytes.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelpack.errors import InputError, UsageError
from modelpack.runs.live import Finished, curves_of, iso
from modelpack.runs.record import FINISHED, Host, RunRecord

EVENT_GLOB = "events.out.tfevents.*"


def run_folders(logdir: Path) -> list[Path]:
    """The folders under `logdir` (itself included) that hold event files, sorted."""
    if not logdir.is_dir():
        raise InputError(
            f"{logdir} is not a TensorBoard log directory", hint="name the folder --logdir named"
        )
    found = sorted({p.parent for p in logdir.rglob(EVENT_GLOB) if p.is_file() and not p.is_symlink()})
    if not found:
        raise InputError(f"{logdir} holds no TensorBoard event file ({EVENT_GLOB})")
    return found


def read_tensorboard(logdir: Path, experiment: str) -> Iterator[Finished]:
    try:
        from tensorboard.backend.event_processing import event_accumulator
        from tensorboard.util import tensor_util
    except ImportError:
        raise UsageError(
            "runs import --tensorboard needs tensorboard", hint="pip install tensorboard"
        ) from None
    root = logdir.resolve()
    for folder in run_folders(root):
        # size_guidance 0: every event, not tensorboard's default sample of the last 10,000
        acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        points: dict[int, dict[str, float]] = {}
        times: list[float] = []
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            for e in acc.Scalars(tag):
                points.setdefault(int(e.step), {})[tag] = float(e.value)
                times.append(e.wall_time)
        for tag in tags.get("tensors", []):
            for e in acc.Tensors(tag):
                value = tensor_util.make_ndarray(e.tensor_proto)
                if value.ndim == 0 and value.dtype.kind in "fiu":
                    points.setdefault(int(e.step), {})[tag] = float(value)
                    times.append(e.wall_time)
        rows = sorted(points.items())
        rel = folder.relative_to(root).as_posix()
        name = rel if rel != "." else root.name
        started, ended = (min(times), max(times)) if times else (0.0, 0.0)
        record = RunRecord(
            id="tb-" + hashlib.sha256(f"{root}\n{rel}".encode()).hexdigest()[:16],
            experiment=experiment,
            status=FINISHED,
            started=iso(started),
            ended=iso(ended),
            duration=ended - started,
            command=(),
            git=None,
            host=Host("", "", "", None, None, None, (), "not recorded: imported from TensorBoard"),
            env={},
            packages={},
            params={},
            tags=(f"tensorboard={name}",),
            metrics={k: v for _, values in rows for k, v in values.items()},
            steps=len(rows),
            notes=(
                f"imported from TensorBoard event files in {folder}",
                "status assumed finished; params, host, GPUs and packages are not in event files",
            ),
        )
        yield Finished(record, curves_of(rows), None, (), Path(tempfile.mkdtemp(prefix="modelpack-import-")))
