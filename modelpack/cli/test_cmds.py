"""`modelpack test` (a release's golden cases and gates) and `modelpack serve` (the runtime, locally)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelpack.cli import _output, _render
from modelpack.cli._app import app
from modelpack.cli._options import Access, JsonOpt, LocalOpt, access_options, key_password
from modelpack.errors import InputError, ModelpackError

ReadyOpt = Annotated[
    float, typer.Option("--ready-timeout", metavar="SECONDS", help="Seconds to wait for /v2/health/ready.")
]


@app.command("test")
@access_options
def test_release(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF", help="The release: NAME:VERSION (local), HOST/REPO:TAG or oci:PATH:TAG."
        ),
    ],
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            metavar="RUNTIME",
            help="docker (the serving image in a throwaway container), local (the runtime as a local "
            "process on the image's own packages), or auto: docker when an engine answers and the "
            "release is in a registry, else local.",
        ),
    ] = "auto",
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Write the report (JSON) here.", show_default=False),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit", metavar="FILE", help="Write JUnit XML here (for CI summaries).", show_default=False
        ),
    ] = None,
    no_attach: Annotated[
        bool, typer.Option("--no-attach", help="Do not attach the report to the release as a referrer.")
    ] = False,
    requests: Annotated[
        int | None,
        typer.Option(
            "--requests",
            metavar="N",
            min=1,
            help="Latency requests to time (default: the release's tests.latency_requests, else 100).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="PATH",
            help="Sign the attached report (an in-toto statement) with this private key: a file, "
            "env://NAME or - for stdin.",
            show_default=False,
        ),
    ] = None,
    evaluate: Annotated[
        str | None,
        typer.Option(
            "--evaluate",
            metavar="DATASET",
            help="Measure the served model on this dataset version (REG/REPO:VERSION) instead of the one "
            "tests.evaluate names (its features and target still come from the release).",
            show_default=False,
        ),
    ] = None,
    load: Annotated[
        str | None,
        typer.Option(
            "--load",
            metavar="NxDURATION",
            help="Load the runtime with N concurrent connections for DURATION (e.g. 8x10s), instead of "
            "tests.load.",
            show_default=False,
        ),
    ] = None,
    ready_timeout: ReadyOpt = 90.0,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Run a release: its golden cases, latency (p50/p95/p99) and gates; exit 1 naming what failed, exit 3
    when the test could not run (no engine, a container that never got ready).

    --runtime docker also runs a release of the local store: its image is loaded into the engine.

    The report is attached to the release as a referrer (so `promote` can require a pass for that exact
    digest) unless --no-attach or the target cannot be written: an in-toto test-result statement over the
    release digest, in a DSSE envelope signed with --key when given (then a refused attach is an error).

    Examples:

      modelpack test 127.0.0.1:5000/acme/iris:1.0.0 --junit junit.xml

      modelpack test iris-onnx:1.0.0 --runtime local --report report.json

      modelpack test 127.0.0.1:5000/acme/iris:1.0.0 --key env://MODELPACK_SIGNING_KEY

      modelpack test iris-onnx:1.0.0 --runtime local --evaluate 127.0.0.1:5000/data/iris:2.0.0 --load 8x10s

    With tests.evaluate (docs/evaluation.md) every row of a dataset version goes through the running model
    and the metrics are measured (gates `measured.f1_macro >= 0.9`, `gap.f1_macro <= 0.02`,
    `fairness.equalized_odds_difference <= 0.05`); with tests.load or --load, `load.p99_ms <= 50`.
    """
    from modelpack import api

    _output.said_local(local)
    from modelpack.api._testing import failure
    from modelpack.testing.load import parse_load
    from modelpack.testing.report import junit_xml

    options = api.TestOptions(
        runtime=runtime,
        requests=requests,
        attach=not no_attach,
        ready_timeout=ready_timeout,
        local=local,
        evaluate=evaluate,
        load=parse_load(load) if load else None,
    )
    with access.targets() as targets:
        password = key_password(key) if key else None
        outcome = api.test(targets, ref, options, info=_output.info, key=key, password=password)
    _write(report, outcome.report.to_bytes(), "--report")
    _write(junit, junit_xml(outcome.report), "--junit")
    _render.tested(outcome, as_json)
    problem = failure(outcome)
    if problem is not None:
        raise problem


def _write(path: Path | None, data: bytes, flag: str) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write: {e.strerror or e}") from None


@app.command()
@access_options
def serve(
    source: Annotated[
        str,
        typer.Argument(metavar="[DIR|REF]", help="A project directory (default: here), or a release to run."),
    ] = ".",
    port: Annotated[
        int | None,
        typer.Option(
            "--port", metavar="PORT", help="Port to listen on (default: a free one).", show_default=False
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Address to listen on.")] = "127.0.0.1",
    ready_timeout: ReadyOpt = 90.0,
    local: LocalOpt = False,
    *,
    access: Access,
) -> None:
    """Serve a model over the Open Inference Protocol (V2) in the foreground; Ctrl-C stops it.

    A project directory is served from its own files, in the current Python environment, with nothing
    built. A release reference runs on the release's files and its serving image's own packages.

    Examples:

      modelpack serve examples/iris-onnx --port 8080

      modelpack serve iris-onnx:1.0.0
    """
    from modelpack import api

    _output.said_local(local)

    try:
        with access.targets() as targets:
            code = api.serve(
                targets,
                source,
                host=host,
                port=port,
                ready_timeout=ready_timeout,
                local=local,
                info=_output.info,
            )
    except KeyboardInterrupt:
        return _output.info("stopped")
    if code != 0:
        raise ModelpackError(f"the serving runtime exited with code {code}")
