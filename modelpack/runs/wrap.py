"""`modelpack run -- python train.py`: a run recorded around training code that does not import modelpack.

The wrapper starts the run, starts the command with MODELPACK_RUN_DIR pointing at the run's directory (so
a `track.run` inside joins this run rather than starting its own), samples the command's processes,
passes SIGTERM, SIGINT and SIGHUP on to it, and ends the run by how the command ended: exit 0 finished,
another exit status failed, a signal killed.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import UsageError
from modelpack.runs import live as live_mod
from modelpack.runs.live import RUN_DIR_ENV, Finished
from modelpack.runs.record import FAILED, FINISHED, KILLED, Failure

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Wrapped:
    finished: Finished
    returncode: int  # as a shell reports it: 128 + N for signal N


def run_wrapped(
    argv: Sequence[str],
    store_path: Path,
    *,
    experiment: str,
    tags: Sequence[str],
    params: Mapping[str, Any],
    cwd: Path,
    environ: Mapping[str, str],
    sample_every: float = 10.0,
    on_start: Callable[[str], None] = lambda _: None,
) -> Wrapped:
    if not argv:
        raise UsageError("nothing to run", hint="modelpack run -- python train.py")
    env = {k: v for k, v in environ.items() if k != RUN_DIR_ENV}
    live = live_mod.begin(
        store_path,
        experiment=experiment,
        params=params,
        tags=tags,
        cwd=cwd,
        environ=env,
        command=argv,
        sample_every=sample_every,
    )
    on_start(live.record.id)
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env={**env, RUN_DIR_ENV: str(live.directory)})
    except OSError as e:
        live.finish(FAILED, Failure("exception", type(e).__name__, str(e)))
        raise UsageError(f"cannot start {argv[0]!r}: {e.strerror or e}", hint="check the command") from None
    live.follow(proc.pid)
    previous = {s: signal.signal(s, lambda signum, _f: proc.send_signal(signum)) for s in FORWARDED}
    try:
        rc = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if rc == 0:
        status, failure = FINISHED, None
    elif rc < 0:
        status, failure = KILLED, Failure("signal", signal.Signals(-rc).name)
    else:
        status, failure = FAILED, Failure("exit", str(rc), f"{argv[0]} exited with status {rc}")
    return Wrapped(live.finish(status, failure), 128 - rc if rc < 0 else rc)
