"""`test` (a release's golden cases and gates) and `serve` (the runtime in the foreground)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelpack.errors import InputError, TestFailedError, UsageError
from modelpack.targets import Targets
from modelpack.testing.testrun import TestOptions, TestOutcome, check_runtime, release_ref, run_test

if TYPE_CHECKING:
    from modelpack.record.evaluation import EvaluationPlan
    from modelpack.testing.evaluate import DatasetFile

__all__ = ["TestOptions", "TestOutcome", "serve", "test"]


def _quiet(_line: str) -> None:
    return None


def test(
    targets: Targets,
    reference: str,
    options: TestOptions = TestOptions(),
    *,
    info: Callable[[str], None] = _quiet,
    key: str | None = None,
    password: bytes | None = None,
) -> TestOutcome:
    """Run a release's golden cases, latency and gates; attach the report unless `options.attach` is off,
    signed by the private key `key` names (a path, `env://NAME` or `-`) when given.
    Returns the outcome whether it passed or not (`outcome.report.passed`)."""
    if key is not None:
        import dataclasses

        from modelpack.trust.keys import load_private

        if not options.attach:
            raise UsageError("--key signs the attached report: drop --no-attach, or --key")
        # loaded before the run: a wrong key fails in a second, not after the latency loop
        options = dataclasses.replace(options, key=load_private(key, env=targets.environ, password=password))
    check_runtime(options.runtime)
    resolved = targets.open(reference, local=options.local)
    ref = release_ref(resolved)
    if ref is None:
        raise UsageError(f"{reference}: name a release tag or digest")
    import tempfile

    def fetch(plan: EvaluationPlan, scratch: Path) -> DatasetFile:
        from modelpack.api._datasets import evaluation_file  # only a run that evaluates pays for it

        return evaluation_file(targets, plan, scratch, info)

    with tempfile.TemporaryDirectory(prefix="modelpack-eval-") as scratch:
        return run_test(
            resolved,
            ref,
            options,
            cache_root=targets.store_path / "cache",
            bases=targets.base_sources,
            info=info,
            fetch_dataset=lambda plan: fetch(plan, Path(scratch)),
        )


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module


def serve(
    targets: Targets,
    source: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    ready_timeout: float = 90.0,
    local: bool = False,
    info: Callable[[str], None] = _quiet,
) -> int:
    """Serve a project directory (its own files, the current environment) or a release (its files and its
    image's own packages) in the foreground until the runtime exits; returns its exit code."""
    from modelpack.testing.local import Stopped, local_server, project_command, reference_command, stop

    if Path(source).is_dir():
        _need_serve_extra()
        command = project_command(Path(source), host=host, port=port)
    else:
        resolved = targets.open(source, local=local)
        ref = release_ref(resolved)
        if ref is None:
            raise InputError(f"{source}: name a release tag or digest")
        command = reference_command(resolved, ref, targets.store_path / "cache", host=host, port=port)
    info(f"starting: {command.note}")
    with local_server(command, ready_timeout=ready_timeout, passthrough=True) as running:
        info(f"serving on {running.url} (Ctrl-C to stop)")
        try:
            return running.process.wait()
        except Stopped:  # SIGTERM/SIGHUP: the runtime drains, and its clean exit is ours
            code = stop(running.process)
            return 0 if code is None else code


def _need_serve_extra() -> None:
    """A project is served in this environment: without the runtime's packages it would die at start."""
    import importlib.util

    missing = [m for m in ("uvicorn", "httptools", "orjson") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(
            f"serving a project directory needs the serve extra ({', '.join(missing)} not installed)",
            # the release's own runtime packages come with it; a project runs on this environment's
            hint="pip install 'modelpack-release[serve]', or serve a built release: modelpack serve NAME:VER",
        )


def failure(outcome: TestOutcome) -> TestFailedError | None:
    """The error a failed test run ends with (None when it passed)."""
    report = outcome.report
    if report.passed:
        return None
    failures = report.failures
    return TestFailedError(
        f"{report.release.name}:{report.release.version} failed {len(failures)} "
        f"check{'s' if len(failures) != 1 else ''}: {', '.join(failures)}"
    )
