"""A run while it runs: metrics buffered in memory, written to the run's directory in the background.

`log` appends one tuple to a list (well under a microsecond); a thread moves the buffer to
`metrics.jsonl` every `flush_every` seconds and samples CPU, RSS and GPU every `sample_every` seconds,
so a run killed with SIGKILL still leaves its directory with the facts it had. The run's directory lives
in the local store (`runs/active/<id>`), which is all a run needs: no server, no network.

A process started by `modelpack run --` finds the wrapper's directory in MODELPACK_RUN_DIR and writes
into it (`attached`): its metrics to the same file, its params, tags, datasets and checkpoints to
`child.json`; the wrapper, which sees how the process ended, writes the record.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelpack.oci import canonical
from modelpack.record.curves import Curves
from modelpack.record.git import git_info
from modelpack.runs import probe
from modelpack.runs.record import RUNNING, Checkpoint, CheckpointFile, DatasetUse, Failure, Host, RunRecord

RUN_DIR_ENV = "MODELPACK_RUN_DIR"  # set by `modelpack run --` for the process it starts
MAX_PARAMS_FILE = 1 << 20
SYSTEM_COLUMNS = ("cpu_percent", "rss_bytes", "gpu_percent", "gpu_memory_bytes")


def new_id(now: float, token: Callable[[int], str] = secrets.token_hex) -> str:
    """Sortable by start time, unique without coordination: `20261206T151907-1a2b3c4d`."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S") + "-" + token(4)


def iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def active_root(store_path: Path) -> Path:
    return store_path / "runs" / "active"


def read_params_file(cwd: Path) -> dict[str, Any]:
    """params.yaml beside the training (DVC's convention), when there is one."""
    import yaml

    path = cwd / "params.yaml"
    if not path.is_file() or path.stat().st_size > MAX_PARAMS_FILE:
        return {}
    loaded = yaml.safe_load(path.read_text())
    return dict(loaded) if isinstance(loaded, dict) else {}


@dataclass(frozen=True)
class Finished:
    """What the end of a run hands to storage: the record, its curves, samples and checkpoint files."""

    record: RunRecord
    curves: Curves | None
    system: bytes | None
    files: tuple[tuple[str, str, Path, str, int], ...]  # (checkpoint, path in it, file, digest, size)
    directory: Path


class Live:
    def __init__(
        self,
        directory: Path,
        record: RunRecord,
        *,
        clock: Callable[[], float] = time.time,
        flush_every: float = 2.0,
        sample_every: float = 10.0,
        sample_pid: int | None = None,
        attached: bool = False,
    ) -> None:
        self.directory = directory
        self.record = record
        self.clock = clock
        self.started = clock()
        self.flush_every = flush_every
        self.sample_every = sample_every
        self.attached = attached
        # a deque: training appends while the writer thread pops, and neither can lose the other's row
        self._rows: deque[tuple[int, Mapping[str, Any]]] = deque()
        self._samples: list[list[float | None]] = []
        self._datasets: list[DatasetUse] = []
        self._checkpoints: list[Checkpoint] = []
        self._files: list[tuple[str, str, Path, str, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler = _Sampler(sample_pid or os.getpid(), gpus=bool(record.host.gpus))
        self._thread = threading.Thread(target=self._loop, name="modelpack-run", daemon=True)

    # --- called by training (keep `log` cheap: no validation, no I/O, no lock) ---

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        self._rows.append((step, metrics))

    def dataset(self, use: DatasetUse) -> None:
        with self._lock:
            self._datasets.append(use)
        self._write_child()

    def checkpoint(
        self,
        name: str,
        step: int | None,
        files: Sequence[tuple[str, Path, str, int]],
        metrics: Mapping[str, float],
    ) -> Checkpoint:
        listed = tuple(CheckpointFile(rel, d, size) for rel, _, d, size in files)
        cp = Checkpoint(name, step, self.clock() - self.started, listed, dict(metrics))
        with self._lock:
            self._checkpoints.append(cp)
            self._files += [(name, rel, path, d, size) for rel, path, d, size in files]
        self._write_child()
        return cp

    def follow(self, pid: int) -> None:
        """Sample another process (and its children): the command `modelpack run --` started."""
        self._sampler = _Sampler(pid, gpus=bool(self.record.host.gpus))

    # --- lifecycle ---

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.attached:
            _write_json(self.directory / "record.json", self.record.to_json())
        self._write_child()
        self._thread.start()

    def _loop(self) -> None:
        next_sample = self.clock()
        while not self._stop.wait(min(self.flush_every, max(0.05, next_sample - self.clock()))):
            self.flush()
            if self.clock() >= next_sample and not self.attached:
                self._sample()
                next_sample = self.clock() + self.sample_every

    def _sample(self) -> None:
        row = self._sampler.sample()
        if row is not None:
            self._samples.append([round(self.clock() - self.started, 3), *row])

    def flush(self) -> None:
        """Moves buffered rows to metrics.jsonl (one line per log call, values numbers or dropped)."""
        rows = [self._rows.popleft() for _ in range(len(self._rows))]
        if not rows:
            return
        lines = []
        for step, metrics in rows:
            clean = {k: float(v) for k, v in metrics.items() if _number(v)}
            lines.append(json.dumps([int(step), clean], separators=(",", ":")))
        with (self.directory / "metrics.jsonl").open("a") as f:
            f.write("\n".join(lines) + "\n")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.flush()
        self._write_child()

    def _write_child(self) -> None:
        if not self.attached:
            return
        with self._lock:
            doc = {
                "params": dict(self.record.params),
                "tags": list(self.record.tags),
                "datasets": [d.to_json() for d in self._datasets],
                "checkpoints": [c.to_json() for c in self._checkpoints],
                "files": [[n, r, str(p), d, s] for n, r, p, d, s in self._files],
            }
        _write_json(self.directory / "child.json", doc)

    def finish(self, status: str, failure: Failure | None) -> Finished:
        """Stops the thread and hands back the run's final state (the record with its end)."""
        if not self.attached and status != RUNNING:
            self._sample()
        self.stop()
        child = _read_json(self.directory / "child.json") if not self.attached else None
        record = self.record
        datasets, checkpoints, files = list(self._datasets), list(self._checkpoints), list(self._files)
        if child:
            tags = tuple(dict.fromkeys([*record.tags, *(child.get("tags") or [])]))
            record = replace(record, params={**record.params, **(child.get("params") or {})}, tags=tags)
            datasets += [DatasetUse.from_json(d) for d in child.get("datasets") or []]
            checkpoints += [Checkpoint.from_json(c) for c in child.get("checkpoints") or []]
            files += [(n, r, Path(p), d, int(s)) for n, r, p, d, s in child.get("files") or []]
        rows = read_metrics(self.directory / "metrics.jsonl")
        curves = curves_of(rows)
        metrics: dict[str, float] = {}
        for _, values in rows:
            metrics.update(values)
        ended = self.clock()
        record = replace(
            record.finished(status, iso(ended), ended - self.started, failure),
            metrics=metrics,
            steps=len(rows),
            datasets=tuple(datasets),
            checkpoints=tuple(checkpoints),
        )
        system = None
        if self._samples:
            system = canonical.dumps({"x": "seconds", "columns": list(SYSTEM_COLUMNS), "rows": self._samples})
        return Finished(record, curves, system, tuple(files), self.directory)


def begin(
    store_path: Path,
    *,
    experiment: str,
    params: Mapping[str, Any] | None,
    tags: Iterable[str],
    cwd: Path,
    environ: Mapping[str, str],
    command: Sequence[str],
    env_allow: Iterable[str] = (),
    clock: Callable[[], float] = time.time,
    host: Callable[[], tuple[Host, list[str]]] = probe.host,
    **kw: Any,
) -> Live:
    """A new run (or, under `modelpack run --`, the wrapper's run, attached), started."""
    attached_dir = environ.get(RUN_DIR_ENV)
    given = {**read_params_file(cwd), **dict(params or {})}
    if attached_dir:
        stub = RunRecord(
            "",
            experiment,
            RUNNING,
            iso(clock()),
            None,
            None,
            (),
            None,
            Host("", "", "", None, None, None),
            {},
            {},
            given,
            tuple(tags),
        )
        live = Live(Path(attached_dir), stub, clock=clock, attached=True, **kw)
        live.start()
        return live
    now = clock()
    run_id = new_id(now)
    machine, notes = host()
    record = RunRecord(
        id=run_id,
        experiment=experiment,
        status=RUNNING,
        started=iso(now),
        ended=None,
        duration=None,
        command=tuple(command),
        git=_git(cwd),
        host=machine,
        env=probe.allowed_env(environ, env_allow),
        packages=probe.packages(),
        params=given,
        tags=tuple(dict.fromkeys(tags)),
        notes=tuple(notes),
    )
    live = Live(active_root(store_path) / run_id, record, clock=clock, **kw)
    live.start()
    return live


def discard(finished: Finished) -> None:
    """The run's directory, once its artifact is safely in the store."""
    shutil.rmtree(finished.directory, ignore_errors=True)


def read_metrics(path: Path) -> list[tuple[int, dict[str, float]]]:
    rows: list[tuple[int, dict[str, float]]] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            step, values = json.loads(line)
        except (ValueError, TypeError):
            continue  # a line cut short by a kill
        rows.append((int(step), {str(k): float(v) for k, v in values.items()}))
    return rows


def curves_of(rows: Sequence[tuple[int, Mapping[str, float]]]) -> Curves | None:
    """Rows by step (calls at one step merged, later values winning), as the bundle's curves layer."""
    by_step: dict[int, dict[str, float]] = {}
    for step, values in rows:
        by_step.setdefault(step, {}).update(values)
    if not by_step:
        return None
    columns = tuple(sorted({k for v in by_step.values() for k in v}))
    table = tuple((s, *(by_step[s].get(c) for c in columns)) for s in sorted(by_step))
    return Curves("step", columns, table)


class _Sampler:
    def __init__(self, pid: int, gpus: bool) -> None:
        self.pid = pid
        self.gpus = gpus
        try:
            import psutil

            self.process: Any = psutil.Process(pid)
            self.process.cpu_percent(None)  # the first call only starts the interval
        except (ImportError, OSError, Exception):
            self.process = None

    def sample(self) -> list[float | None] | None:
        if self.process is None:
            return None
        try:
            procs = [self.process, *self.process.children(recursive=True)]
            cpu = sum(p.cpu_percent(None) for p in procs)
            rss = sum(p.memory_info().rss for p in procs)
        except Exception:  # the process ended between the listing and the read
            return None
        gpu, gpu_mem = _gpu_use() if self.gpus else (None, None)
        return [round(cpu, 1), float(rss), gpu, gpu_mem]


def _gpu_use() -> tuple[float | None, float | None]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            util = mem = 0.0
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                util += float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                mem += float(pynvml.nvmlDeviceGetMemoryInfo(h).used)
            return util, mem
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None, None


def _git(cwd: Path) -> Any:
    info = git_info(cwd)
    return info.recorded() if info is not None else None


def _number(v: Any) -> bool:
    # numbers.Real: numpy's float32/int64 scalars count, as training code logs them
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(canonical.dumps(obj))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None
