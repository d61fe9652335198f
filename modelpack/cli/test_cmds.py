"""`modelpack test` (a release's golden cases and gates) and `modelpack serve` (the runtime, locally)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import CaFileOpt, InsecureOpt, JsonOpt, PlainHttpOpt, StoreOpt, open_targets
from modelpack.errors import InputError, TestFailedError

if TYPE_CHECKING:
    from modelpack.runner.report import TestReport


@app.command("test")
def test_release(
    ref: Annotated[
        str, typer.Argument(help="The release: NAME:VERSION (local), HOST/REPO:TAG or oci:PATH:TAG.")
    ],
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="docker (the serving image in a throwaway container), local (the runtime as a local "
            "process on the image's own packages), or auto: docker when an engine answers and the "
            "release is in a registry, else local.",
        ),
    ] = "auto",
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the report (JSON) here.", show_default=False)
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="Write JUnit XML here (for CI summaries).", show_default=False),
    ] = None,
    no_attach: Annotated[
        bool, typer.Option("--no-attach", help="Do not attach the report to the release as a referrer.")
    ] = False,
    requests: Annotated[
        int | None,
        typer.Option(
            "--requests",
            min=1,
            help="Latency requests to time (default: the release's tests.latency_requests, else 100).",
            show_default=False,
        ),
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option("--ready-timeout", help="Seconds to wait for /v2/health/ready.")
    ] = 90.0,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a release: its golden cases, latency (p50/p95/p99) and gates; exit 1 naming what failed, 3
    when the test could not run (no engine, a container that exited before it was ready, a failed pull).

    --runtime docker also runs a release of the local store: its image is loaded into the engine.

    The report is attached to the release as a referrer (so `promote` can require a pass for that exact
    digest) unless --no-attach or the target cannot be written.

    Examples:

      modelpack test 127.0.0.1:5000/acme/iris:1.0.0 --junit junit.xml

      modelpack test iris-onnx:1.0.0 --runtime local --report report.json
    """
    from modelpack.runner.report import junit_xml
    from modelpack.runner.testrun import TestOptions, run_test

    options = TestOptions(
        runtime=runtime, requests=requests, attach=not no_attach, ready_timeout=ready_timeout
    )
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        outcome = run_test(targets, ref, options, info=_output.info)
    result = outcome.report
    if report is not None:
        _write(report, result.to_bytes(), "--report")
    if junit is not None:
        _write(junit, junit_xml(result), "--junit")
    if as_json:
        _output.emit_json(
            {
                **result.to_json(),
                "attached": outcome.attached.digest if outcome.attached else None,
                "attachNote": outcome.attach_note,
            }
        )
    else:
        _render(result)
        _output.info(outcome.attach_note)
    if not result.passed:
        failures = result.failures
        raise TestFailedError(
            f"{result.release.name}:{result.release.version} failed {len(failures)} "
            f"check{'s' if len(failures) != 1 else ''}: {', '.join(failures)}"
        )
    if not as_json:
        _output.info(f"all {len(result.cases)} cases and {len(result.gates)} gates passed")


def _render(report: TestReport) -> None:
    rows: list[tuple[str, str, str]] = []
    for c in report.cases:
        rows.append((f"case {c.name}", "pass" if c.passed else "FAIL", "; ".join(c.problems)))
    for g in report.gates:
        rows.append((f"gate {g.gate}", "pass" if g.passed else "FAIL", g.detail))
    title = f"{report.reference} ({report.release.digest[:19]}, {report.runtime})"
    _output.table(("check", "result", "detail"), rows, title=title)
    _output.info(f"runtime: {report.runtime} ({report.runtime_note})")
    if report.latency is not None:
        lat = report.latency
        _output.info(
            f"latency over {lat.requests} requests: p50 {lat.p50_ms:.2f} ms, p95 {lat.p95_ms:.2f} ms, "
            f"p99 {lat.p99_ms:.2f} ms"
        )


def _write(path: Path, data: bytes, flag: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write: {e.strerror or e}") from None


@app.command()
def serve(
    source: Annotated[
        str,
        typer.Argument(help="A project directory (default: here), or a release reference to run."),
    ] = ".",
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port to listen on (default: a free one).", show_default=False),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    ready_timeout: Annotated[
        float, typer.Option("--ready-timeout", help="Seconds to wait for /v2/health/ready.")
    ] = 90.0,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
) -> None:
    """Serve a model over the Open Inference Protocol (V2) in the foreground; Ctrl-C stops it.

    A project directory is served from its own files, in the current Python environment, with nothing
    built. A release reference runs on the release's files and its serving image's own packages.

    Examples:

      modelpack serve examples/iris-onnx --port 8080

      modelpack serve iris-onnx:1.0.0
    """
    from modelpack.runner.local import local_server, project_command, reference_command

    if Path(source).is_dir():
        command = project_command(Path(source), host=host, port=port)
    else:
        with open_targets(store, ca_file, insecure, plain_http) as targets:
            command = reference_command(targets, source, host=host, port=port)
    _output.info(f"starting: {command.note}")
    try:
        with local_server(command, ready_timeout=ready_timeout, passthrough=True) as running:
            _output.info(f"serving on {running.url} (Ctrl-C to stop)")
            code = running.process.wait()
    except KeyboardInterrupt:
        _output.info("stopped")
        return
    if code != 0:
        raise TestFailedError(f"the serving runtime exited with code {code}")
