"""Rendering for the CLI: JSON for machines, tables and progress bars for people (only on a TTY).

Everything shown to people may hold registry content (a metric name, a reason, a label), so every line
goes through `clean`: control characters are escaped (`\\x1b`), never sent to the terminal, and nothing is
read as rich markup. JSON keeps the values exactly (json.dumps escapes control characters itself).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelpack.text import clean

if TYPE_CHECKING:
    from modelpack.oci.target import Progress as ProgressEvent
    from modelpack.oci.target import ProgressFn

# rich is imported only to draw progress bars on a terminal: a command in a pipe or CI never pays for it.


def count(n: int, word: str) -> str:
    """`1 file`, `2 files`: every count a person reads (words here take a plain -s)."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def said_local(local: bool) -> None:
    """--local reads a pulled copy: say so, so nobody takes it for what the registry holds now."""
    if local:
        info("--local: reading the local store's pulled copy, not the registry")


def emit_json(value: Any) -> None:
    import json  # only --json needs it: not on every command's start

    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def echo(line: object = "") -> None:
    """One line of data on stdout."""
    sys.stdout.write(clean(line) + "\n")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """Aligned plain columns, one row per line, never wrapped or cut: the same in a terminal, a pipe and a
    CI log, so `grep` and `awk` see whole rows."""
    # a newline in a cell would forge a row: cells are one line each
    grid = [[clean(c) for c in columns], *([clean(v).replace("\n", "\\n") for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in grid) for i in range(len(columns))]
    if title:
        echo(title)
    for r in grid:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def info(message: str) -> None:
    """A status line for people, on stderr so stdout stays data; none with -q."""
    from modelpack.cli._app import Settings

    if not Settings.quiet:
        sys.stderr.write(clean(message) + "\n")
        sys.stderr.flush()


@contextmanager
def progress_bars(enabled: bool | None = None) -> Iterator[ProgressFn]:
    """Yields a progress callback; draws one bar per blob on a TTY, nothing otherwise.

    The core calls the callback from worker threads, so updates go through a lock.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda _e: None
        return
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

    err = Console(stderr=True, highlight=False, soft_wrap=True)
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
