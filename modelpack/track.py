"""The tracking API training imports: every run recorded from its first step, with no server.

    from modelpack import track

    with track.run(params={"alpha": 1e-4}, tags=["sweep"]) as run:
        data = run.dataset("127.0.0.1:5000/acme/iris-data:v3")   # pulled if needed, verified, recorded
        for epoch in range(10):
            run.log(epoch, loss=loss, f1=f1)                      # buffered: under a microsecond or two
        run.checkpoint("model.onnx", metrics={"f1": f1})          # the file's digest; its bytes go along

The run is written to the local store when the block ends (finished; failed, with the exception; killed,
with the signal: SIGTERM and Ctrl-C still leave a record) and pushed to the experiment's repository when
one is named (`repo=` or MODELPACK_TRACKING_REPO). Under `modelpack run -- python train.py` the block
joins the wrapper's run instead of starting its own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from modelpack.errors import InputError
from modelpack.runs import live as live_mod
from modelpack.runs import probe
from modelpack.runs.checkpoints import hash_checkpoint
from modelpack.runs.live import Live
from modelpack.runs.record import FAILED, FINISHED, KILLED, DatasetUse, Failure, RunRecord
from modelpack.runs.release import repository_of
from modelpack.runs.save import TRACKING_REPO_ENV, Saved, default_experiment, save
from modelpack.targets import Targets

__all__ = ["Run", "run"]

log = logging.getLogger("modelpack.track")
MAX_TRACEBACK = 8192


class Killed(BaseException):
    """Raised in the main thread by the SIGTERM handler, so `finally` blocks and the record run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Run:
    """One run, while it runs. `saved` is set when the block has ended."""

    def __init__(self, live: Live, store_path: Path, environ: Mapping[str, str]) -> None:
        self._live = live
        self._store_path = store_path
        self._environ = environ
        self.saved: Saved | None = None
        self.record: RunRecord | None = None  # the final record, once ended

    @property
    def id(self) -> str:
        return self._live.record.id

    @property
    def params(self) -> Mapping[str, Any]:
        return self._live.record.params

    def log(self, step: int, **metrics: Any) -> None:
        """Metrics at `step` (numbers; anything else is dropped when written)."""
        self._live._rows.append((step, metrics))

    def dataset(self, ref: str) -> Path:
        """A published dataset (`HOST/REPO:VERSION`): resolved to its digest, pulled into the store's cache
        when absent (every file verified), recorded; returns the local folder."""
        from modelpack import api

        with Targets(store_path=self._store_path, environ=self._environ) as targets:
            info = api.dataset_inspect(targets, ref)
            dest = self._store_path / "cache" / "datasets" / info.digest.split(":", 1)[1]
            if not (dest / ".modelpack-complete").is_file():
                staging = dest.with_name(dest.name + f".{os.getpid()}.partial")
                api.dataset_pull(targets, f"{repository_of(ref)}@{info.digest}", staging, force=True)
                (staging / ".modelpack-complete").write_text(info.digest)
                try:
                    staging.rename(dest)
                except OSError:  # another run pulled the same version meanwhile
                    import shutil

                    shutil.rmtree(staging, ignore_errors=True)
        self._live.dataset(DatasetUse(ref, info.digest, info.record.sha256))
        return dest

    def checkpoint(
        self,
        path: str | os.PathLike[str],
        *,
        step: int | None = None,
        metrics: Mapping[str, float] | None = None,
        name: str | None = None,
    ) -> None:
        """Records weights saved now (a file or a folder): each file's digest, the step, the metrics. The
        files' bytes are read when the run ends and go into the run artifact."""
        p = Path(path)
        files = hash_checkpoint(p)
        # paths as training wrote them, relative to where it ran: `build --run` puts them back there
        try:
            shown = p.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            shown = p.name
        placed = [(shown if p.is_file() else f"{shown}/{rel}", f, d, size) for rel, f, d, size in files]
        self._live.checkpoint(name or p.name, step, placed, dict(metrics or {}))


@contextmanager
def run(
    params: Mapping[str, Any] | None = None,
    *,
    tags: Iterable[str] = (),
    repo: str | None = None,
    sample_every: float = 10.0,
    env: Iterable[str] = (),
    store: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Run]:
    """Records a run for the block. `repo`: the experiment's repository (`HOST/REPO` pushes there; a bare
    name stays in the local store); default MODELPACK_TRACKING_REPO, else `<directory>-runs` in the store.
    `env`: more environment variable names (or prefixes ending in `_`) to record; secrets never are."""
    _check_params(params)
    environ = dict(os.environ if environ is None else environ)
    with Targets(environ=environ, store_path=Path(store) if store else None) as targets:
        store_path = targets.store_path
        targets.store.ensure()  # before the run's directory goes into it
    cwd = Path.cwd()
    experiment = repo or environ.get(TRACKING_REPO_ENV) or default_experiment(cwd)
    live = live_mod.begin(
        store_path,
        experiment=experiment,
        params=params,
        tags=tags,
        cwd=cwd,
        environ=environ,
        command=probe.command(),
        env_allow=env,
        sample_every=sample_every,
    )
    handle = Run(live, store_path, environ)
    previous = _install_sigterm()
    status, failure = FINISHED, None
    pending: BaseException | None = None
    try:
        yield handle
    except Killed as e:
        status, failure, pending = KILLED, Failure("signal", signal.Signals(e.signum).name), e
    except KeyboardInterrupt as e:
        status, failure, pending = KILLED, Failure("signal", "SIGINT"), e
    except SystemExit as e:
        if e.code not in (None, 0):
            status, failure = FAILED, Failure("exit", str(e.code))
        pending = e
    except BaseException as e:
        status, failure, pending = FAILED, _failure(e), e
    finally:
        _restore_sigterm(previous)
    finished = live.finish(status, failure)
    if not live.attached:
        handle.record = finished.record
        with Targets(environ=environ, store_path=store_path) as targets:
            handle.saved = save(targets, finished, experiment)
        if handle.saved.push_error:
            log.warning("run %s is in the local store only: %s", finished.record.id, handle.saved.push_error)
    if isinstance(pending, Killed) and previous == signal.SIG_DFL:
        signal.signal(pending.signum, signal.SIG_DFL)
        os.kill(os.getpid(), pending.signum)  # die of the signal, as the process would have
    if pending is not None:
        raise pending


def _failure(e: BaseException) -> Failure:
    tb = "".join(traceback.format_exception(e))[-MAX_TRACEBACK:]
    return Failure("exception", type(e).__qualname__, str(e)[:2000], tb)


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise Killed(signum)


def _install_sigterm() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _check_params(params: Any) -> None:
    if params is not None and not isinstance(params, Mapping):
        raise InputError("track.run(params=...) takes a mapping of names to values")
