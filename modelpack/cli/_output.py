"""Rendering for the CLI: JSON for machines, tables and progress bars for people (only on a TTY)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelpack.oci.target import Progress as ProgressEvent
from modelpack.oci.target import ProgressFn

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    t = Table(*columns, title=title, box=None, pad_edge=False, show_edge=False)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def info(message: str) -> None:
    """A status line for people, on stderr so stdout stays data."""
    err.print(message)


@contextmanager
def progress_bars(enabled: bool | None = None) -> Iterator[ProgressFn]:
    """Yields a progress callback; draws one bar per blob on a TTY, nothing otherwise.

    The core calls the callback from worker threads, so updates go through a lock.
    """
    if enabled is None:
        enabled = err.is_terminal
    if not enabled:
        yield lambda _e: None
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def on_event(e: ProgressEvent) -> None:
        with lock:
            task = tasks.get(e.digest)
            label = f"{e.what} {e.digest.split(':', 1)[-1][:12]}"
            if task is None:
                task = bars.add_task(label, total=e.total or None)
                tasks[e.digest] = task
            bars.update(task, completed=e.done, total=e.total or None, description=label)

    with bars:
        yield on_event
