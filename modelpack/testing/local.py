"""The serving runtime as a local process: `python -m modelpack.serve` on unpacked files, on 127.0.0.1.

For a release with a serving image, the process sees exactly the image's pinned packages: the image's
deps and runtime layers go on PYTHONPATH and the interpreter runs with `-S` (no site-packages at all), so
nothing from the user's environment can satisfy an import the image would fail. A bundle-only release
(or a project directory, for `modelpack serve`) runs in the current interpreter's environment instead.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import modelpack
from modelpack.errors import InputError, TestNotRunError
from modelpack.release.view import ReleaseView
from modelpack.testing.container import free_port, wait_ready
from modelpack.testing.unpacked import ImageRuntime, ReleaseFiles

if TYPE_CHECKING:
    from modelpack.targets import Location

# What a clean child environment keeps from ours: enough to find binaries, a home and temp space.
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
Spawn = Callable[..., "subprocess.Popen[bytes]"]


@dataclass(frozen=True)
class ServeCommand:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    pythonpath: tuple[str, ...]  # empty: the current environment's own sys.path
    note: str  # what environment it runs in, for the report and the user
    host: str = "127.0.0.1"
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class LocalRunning:
    url: str
    pid: int
    command: ServeCommand
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)


def interpreter_for(python: str | None) -> str:
    """An interpreter of the Python the image's deps were built for (`serving.python`, e.g. "3.11")."""
    if not python or python == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return sys.executable
    found = shutil.which(f"python{python}")
    if found is None:
        raise TestNotRunError(
            f"the release's packages are built for Python {python}; this machine runs "
            f"{platform.python_version()} and has no python{python} on PATH",
            hint="install that Python, or run with --runtime docker",
        )
    return found


def _check_platform() -> None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise TestNotRunError(
            f"the serving image's packages are for linux/amd64, this machine is "
            f"{sys.platform}/{platform.machine()}",
            hint="run with --runtime docker",
        )


def release_command(
    release: ReleaseView,
    files: ReleaseFiles,
    image: ImageRuntime | None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ServeCommand:
    """How to run a release locally: in the image's own packages when it has an image, else in ours."""
    port = port or free_port()
    serving = release.record.serving
    model = serving.model if serving else None
    flags = [
        "--name", release.record.name,
        "--version", release.record.version,
        "--handler", serving.handler if serving else "onnx",
        "--model-dir", str(files.models),
        "--code-dir", str(files.code),
        "--bundle-digest", release.bundle.digest,
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip
    if model is not None:
        flags += ["--model", model.removeprefix("models/")]
    env = {k: environ[k] for k in _KEEP_ENV if k in environ}
    env["MODELPACK_INDEX_DIGEST"] = release.digest
    if image is None:
        root = str(Path(modelpack.__file__).resolve().parent.parent)
        note = "local process in the current Python environment (the release has no serving image)"
        argv = (sys.executable, "-m", "modelpack.serve", *flags)
        return ServeCommand(argv, {**env, "PYTHONPATH": root}, (), note, host, port)
    _check_platform()
    runtime = image.runtime or Path(modelpack.__file__).resolve().parent.parent
    path = (str(runtime), str(image.deps))
    note = f"local process on the serving image's packages (deps layer {image.deps_layer[:19]})"
    python = interpreter_for(serving.python if serving else None)
    argv = (python, "-S", "-m", "modelpack.serve", *flags)
    env = {**image.env, **env, "PYTHONPATH": os.pathsep.join(path)}
    return ServeCommand(argv, env, path, note, host, port)


def project_command(project: Path, *, host: str = "127.0.0.1", port: int | None = None) -> ServeCommand:
    """How to serve a project directory as is: its files in place, in the current environment."""
    from modelpack.packfile import find_packfile, load_packfile

    pf = load_packfile(find_packfile(project))
    port = port or free_port()
    flags = [
        "--name", pf.name,
        "--version", pf.version or "dev",
        "--handler", pf.code.handler,
        "--model-dir", str(pf.root),
        "--code-dir", str(pf.root),
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip
    onnx = next((f for f in pf.model.files if f.suffix == ".onnx"), None)
    if pf.code.builtin:
        if onnx is None:
            raise InputError(f"{pf.path}: the onnx handler needs an .onnx file under model.paths")
        flags += ["--model", onnx.relative_to(pf.root).as_posix()]
    env = {k: v for k, v in os.environ.items() if k not in ("MODELPACK_SERVING_CONFIG", "PORT")}
    note = "local process in the current Python environment, on the project's files"
    return ServeCommand((sys.executable, "-m", "modelpack.serve", *flags), env, (), note, host, port)


@contextmanager
def local_server(
    command: ServeCommand,
    *,
    ready_timeout: float = 60.0,
    passthrough: bool = False,
    spawn: Spawn = subprocess.Popen,
) -> Iterator[LocalRunning]:
    """Starts the command, waits for /v2/health/ready, and always stops it (terminate, then kill).
    `passthrough` lets the process write to our stdout/stderr (foreground `modelpack serve`)."""
    with tempfile.TemporaryFile(prefix="modelpack-serve-") as log:
        proc = _start(command, None if passthrough else log, spawn)
        try:
            if not wait_ready(command.url, ready_timeout, lambda: proc.poll() is None):
                code = proc.poll()
                state = (
                    f"exited with code {code}" if code is not None else f"not ready in {ready_timeout:.0f} s"
                )
                raise TestNotRunError(
                    f"the local serving runtime {state} ({command.url}/v2/health/ready); "
                    f"last output:\n{_tail(log)}"
                )
            yield LocalRunning(command.url, proc.pid, command, proc)
        finally:
            stop(proc)


def _start(command: ServeCommand, log: IO[bytes] | None, spawn: Spawn) -> subprocess.Popen[bytes]:
    kwargs: dict[str, Any] = {"env": dict(command.env)}
    if log is not None:
        kwargs.update(stdout=log, stderr=subprocess.STDOUT)
    try:
        return spawn(list(command.argv), **kwargs)
    except OSError as e:
        raise TestNotRunError(f"could not start {command.argv[0]}: {e.strerror or e}") from None


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate (uvicorn shuts down cleanly on SIGTERM), then kill if it does not exit in `grace`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def _tail(log: IO[bytes], lines: int = 30, limit: int = 64 * 1024) -> str:
    log.flush()
    size = log.seek(0, os.SEEK_END)
    if size == 0:
        return "(no output)"
    log.seek(max(0, size - limit))
    text = log.read().decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def reference_command(
    resolved: Location, ref: str, cache_root: Path, *, host: str = "127.0.0.1", port: int | None = None
) -> ServeCommand:
    """`modelpack serve REF`: the release's files and its image's packages, cached in the store."""
    from modelpack.release.view import load_release
    from modelpack.testing.unpacked import image_runtime, release_files

    release = load_release(resolved.target, ref, where=resolved.display)
    files = release_files(resolved.target, release, cache_root)
    image = image_runtime(resolved.target, release, cache_root)
    return release_command(release, files, image, host=host, port=port)
