"""`modelpack test`: choose a runtime, start the release, run its cases, latency and gates, report.

The side effects arrive as parameters (the engine probe, the clock, progress messages, where base layers
live), so the CLI only renders what `run_test` returns. Names are resolved by the caller (api/_testing.py):
this module gets the place the release is in, never a name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from modelpack.errors import RegistryError, TestNotRunError, UsageError
from modelpack.oci import digest as digests
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Target
from modelpack.record.cases import Case, load_cases
from modelpack.record.evaluation import EvaluationPlan, LoadPlan
from modelpack.release.view import ReleaseView, load_release
from modelpack.targets import Location
from modelpack.testing.cases import CaseResult, LatencyError, measure_latency, run_cases
from modelpack.testing.evaluate import DatasetFile, Evaluation, Prepared, evaluate, prepare
from modelpack.testing.gates import GateResult, Latency, evaluate_gates
from modelpack.testing.load import LoadResult, MemoryProbe, container_peak_mb, local_peak_mb, run_load
from modelpack.testing.report import ReleaseInfo, TestReport, attach_report
from modelpack.testing.unpacked import ReleaseFiles, image_runtime, release_files
from modelpack.trust.keys import PrivateKey

RUNTIMES = ("auto", "docker", "local")
DEFAULT_LATENCY_REQUESTS = 100
MB = 1_000_000


@dataclass(frozen=True)
class TestOptions:
    __test__ = False  # not a pytest class

    runtime: str = "auto"
    requests: int | None = None  # None: the record's tests.latencyRequests
    attach: bool = True
    ready_timeout: float = 90.0
    local: bool = False  # read a registry name from the store's pulled copy
    key: PrivateKey | None = None  # signs the attached evidence
    evaluate: str | None = None  # --evaluate: the dataset version to measure on, instead of the record's
    load: LoadPlan | None = None  # --load: instead of the record's tests.load


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False

    report: TestReport
    attached: Descriptor | None
    attach_note: str  # where it was attached, or why not

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(),
            "attached": self.attached.digest if self.attached else None,
            "attachNote": self.attach_note,
        }


def docker_answers(timeout: float = 3.0) -> bool:
    """True when a Docker engine answers a ping (DOCKER_HOST or the default socket)."""
    try:
        import docker

        client = docker.from_env(version="auto", timeout=int(max(1, timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, refused, timed out: all mean "no engine here"
        return False


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BaseSources = Callable[[Target, str], list[Target]]  # (store, image ref) -> where its base layers live
FetchDataset = Callable[[EvaluationPlan], DatasetFile]  # pulls and verifies the evaluation file


def _no_datasets(plan: EvaluationPlan) -> DatasetFile:
    raise UsageError(f"tests.evaluate names {plan.dataset}, but this run cannot pull datasets")


def run_test(
    resolved: Location,
    ref: str,
    options: TestOptions = TestOptions(),
    *,
    cache_root: Path,
    bases: BaseSources,
    info: Callable[[str], None] = lambda _m: None,
    engine_answers: Callable[[], bool] = docker_answers,
    clock: Callable[[], str] = now_rfc3339,
    fetch_dataset: FetchDataset = _no_datasets,
) -> TestOutcome:
    check_runtime(options.runtime)
    started = clock()
    release = load_release(resolved.target, ref, where=resolved.display)
    runtime, note = choose_runtime(resolved, release, options.runtime, engine_answers)
    info(f"testing {resolved.display} ({release.digest[:19]}) with the {runtime} runtime: {note}")
    files = release_files(resolved.target, release, cache_root, code_only=runtime == "docker")
    cases, cases_digest = _cases(release, files.root, resolved.display)
    tests = release.record.tests
    n = options.requests or (tests.latency_requests if tests else None) or DEFAULT_LATENCY_REQUESTS
    if n < 1:
        raise UsageError(f"--requests {n}: must be at least 1")
    plan = evaluation_plan(release, options.evaluate, resolved.display)
    load_plan = options.load or (tests.load if tests else None)
    recorded = {k: m.value for k, m in release.record.metrics.items()}
    # before the server: a missing column or a bad dataset fails in a second
    prepared = prepare(plan, fetch_dataset(plan)) if plan else None
    load_body = _load_request(cases, prepared) if load_plan else None
    server = _server(bases, resolved, release, runtime, files, cache_root, options, info)
    evaluation: Evaluation | None = None
    load: LoadResult | None = None
    with server as (url, detail, memory):
        note = f"{note}; {detail}" if detail else note
        results, latency, latency_problem = _exercise(url, release.record.name, cases, n, info)
        endpoint = f"{url}/v2/models/{release.record.name}/infer"
        if prepared is not None:
            with httpx.Client(timeout=120.0) as http:
                infer = _inferrer(http, url, release.record.name)
                evaluation = evaluate(prepared, infer, recorded, info)
        if load_plan is not None and load_body is not None:
            info(f"load: {load_plan.connections} connections for {load_plan.duration_s:g} s")
            load = run_load(endpoint, load_body, load_plan, memory)
    size_mb = image_size_mb(resolved.target, release)
    gates = _gates(release, latency, latency_problem, size_mb, evaluation, load)
    report = TestReport(
        reference=resolved.display,
        release=ReleaseInfo(
            digest=release.digest,
            media_type=release.media_type,
            size=len(resolved.target.get_manifest(release.digest).raw),
            name=release.record.name,
            version=release.record.version,
            bundle_digest=release.bundle.digest,
            image_digest=release.image.digest if release.image else None,
        ),
        runtime=runtime,
        runtime_note=note,
        started=started,
        finished=clock(),
        cases=results,
        gates=gates,
        latency=latency,
        image_size_mb=size_mb,
        cases_digest=cases_digest,
        evaluation=evaluation,
        load=load,
    )
    attached, attach_note = _attach(resolved, report, options.attach, options.key)
    return TestOutcome(report, attached, attach_note)


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")


def release_ref(resolved: Location) -> str | None:
    """The tag or digest naming one release at `resolved` (None: a repository, no release named)."""
    return resolved.ref or (resolved.reference.ref if resolved.reference else None)


def _exercise(
    url: str, name: str, cases: tuple[Case, ...], n: int, info: Callable[[str], None]
) -> tuple[tuple[CaseResult, ...], Latency | None, str]:
    """Golden cases, then latency over the first case's request; (results, latency, why no latency)."""
    with httpx.Client(timeout=30.0) as http:
        infer = _inferrer(http, url, name)
        results = run_cases(cases, infer)
        info(f"{sum(r.passed for r in results)}/{len(results)} golden cases passed; timing {n} requests")
        if not cases:
            return results, None, "no golden case to time"
        try:
            return results, measure_latency(cases[0].request(), infer, n), ""
        except (LatencyError, httpx.HTTPError) as e:
            return results, None, str(e)


def evaluation_plan(release: ReleaseView, dataset: str | None, display: str) -> EvaluationPlan | None:
    """The record's tests.evaluate, on `dataset` instead when --evaluate names one."""
    plan = release.record.tests.evaluate if release.record.tests else None
    if dataset is None:
        return plan
    if plan is None:
        raise UsageError(
            f"--evaluate {dataset}: {display} declares no tests.evaluate (its features and target)",
            hint="add tests.evaluate to modelpack.yaml and rebuild",
        )
    return dataclasses.replace(plan, dataset=dataset)


def _load_request(cases: tuple[Case, ...], prepared: Prepared | None) -> dict[str, Any]:
    """What the load sends: the first golden case's request, else one row of the evaluation."""
    if cases:
        return cases[0].request()
    if prepared is not None:
        row = prepared.x[0]
        name = prepared.plan.input
        return {"inputs": [{"name": name, "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    raise UsageError(
        "a load test needs a request to send: declare golden cases (tests.cases) or tests.evaluate"
    )


def _gates(
    release: ReleaseView,
    latency: Latency | None,
    latency_problem: str,
    size_mb: float | None,
    evaluation: Evaluation | None = None,
    load: LoadResult | None = None,
) -> tuple[GateResult, ...]:
    metrics = {k: m.value for k, m in release.record.metrics.items()}
    metrics.update(latency.metrics() if latency else {})
    if size_mb is not None:
        metrics["image_size_mb"] = size_mb
    metrics.update(sourced_metrics(metrics, evaluation, load))
    gates = evaluate_gates(list(release.record.tests.gates if release.record.tests else ()), metrics)
    if not latency_problem:
        return gates
    # say why latency is missing rather than "was not measured"
    return tuple(
        GateResult(g.gate, None, False, f"latency not measured: {latency_problem}")
        if not g.passed and g.gate.startswith("latency_")
        else g
        for g in gates
    )


def sourced_metrics(
    recorded: dict[str, float], evaluation: Evaluation | None, load: LoadResult | None
) -> dict[str, float]:
    """The prefixed gate names: where each number comes from (packfile/gates.py lists them)."""
    out = {f"recorded.{k}": v for k, v in recorded.items()}
    if evaluation is not None:
        m = evaluation.measurement
        out.update({f"measured.{k}": v for k, v in m.metrics.items()})
        out.update({f"gap.{c.metric}": c.gap for c in evaluation.claims})
        out.update({f"fairness.{k}": v for k, v in m.fairness.items()})
    if load is not None:
        out.update({f"load.{k}": v for k, v in load.metrics().items()})
    return out


def choose_runtime(
    resolved: Location, release: ReleaseView, wanted: str, engine_answers: Callable[[], bool]
) -> tuple[str, str]:
    """(runtime, why): docker only for a registry reference with an image and an engine that answers."""
    remote = resolved.reference is not None and not resolved.reference.is_layout
    if wanted == "local":
        return "local", "--runtime local"
    if wanted == "docker":
        if release.image is None:
            raise UsageError(f"{resolved.display} has no serving image to run", hint="use --runtime local")
        if not engine_answers():
            raise TestNotRunError(
                "--runtime docker: no Docker engine answers (is DOCKER_HOST right?)",
                hint="start one, or run with --runtime local",
            )
        return "docker", "--runtime docker" if remote else "--runtime docker (image loaded from the store)"
    if release.image is None:
        return "local", "the release has no serving image"
    if not remote:
        # loading an image into the engine costs a copy of every layer: only when asked for
        return "local", "a local release runs as a local process (--runtime docker loads its image)"
    if engine_answers():
        return "docker", "a Docker engine answered"
    return "local", "no Docker engine answered"


@contextmanager
def _server(
    bases: BaseSources,
    resolved: Location,
    release: ReleaseView,
    runtime: str,
    files: ReleaseFiles,
    cache_root: Path,
    options: TestOptions,
    info: Callable[[str], None],
) -> Iterator[tuple[str, str, MemoryProbe]]:
    if runtime == "docker":
        with _docker_server(bases, resolved, release, options, info) as served:
            yield served
        return
    from modelpack.testing.local import local_server, release_command

    image = image_runtime(resolved.target, release, cache_root)
    command = release_command(release, files, image)
    info(f"starting the local runtime: {command.note}")
    with local_server(command, ready_timeout=options.ready_timeout) as running:
        yield running.url, command.note, lambda: local_peak_mb(running.pid)


@contextmanager
def _docker_server(
    bases: BaseSources,
    resolved: Location,
    release: ReleaseView,
    options: TestOptions,
    info: Callable[[str], None],
) -> Iterator[tuple[str, str, MemoryProbe]]:
    """The serving image in a container: pulled by digest from its registry, or loaded from the store."""
    from modelpack.testing.container import serving_container
    from modelpack.testing.engine import engine_client, loaded, pulled

    assert release.image is not None
    env = {"MODELPACK_INDEX_DIGEST": release.digest}
    client = engine_client()
    try:
        if resolved.reference is not None and not resolved.reference.is_layout:
            pinned = f"{resolved.reference.name}@{release.image.digest}"
            source, detail = pulled(client, pinned), f"image {pinned}"
        else:
            fallbacks = bases(resolved.target, release.image.digest)
            source = loaded(client, resolved.target, release.image.digest, fallbacks, info)
            detail = f"image {release.image.digest} loaded from {resolved.display}"
        info(f"starting {detail}")
        with source as image, serving_container(image, env=env, ready_timeout=options.ready_timeout) as up:
            container = client.containers.get(up.container_id)
            yield up.url, detail, lambda: container_peak_mb(container)
    finally:
        client.close()


def _inferrer(http: httpx.Client, url: str, name: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    endpoint = f"{url}/v2/models/{name}/infer"

    def infer(body: dict[str, Any]) -> tuple[int, Any]:
        response = http.post(endpoint, json=body)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    return infer


def _cases(release: ReleaseView, root: Path, display: str) -> tuple[tuple[Case, ...], str | None]:
    """The golden cases and the sha256 of the file they were read from (the bytes the run used)."""
    path = release.record.tests.cases if release.record.tests else None
    if not path:
        return (), None
    cases = load_cases(root / str(path), display=f"{display}: {path}")
    with open(root / str(path), "rb") as f:
        return cases, digests.of_stream(f)[0]


def image_size_mb(target: Target, release: ReleaseView) -> float | None:
    """Sum of the image manifest's layer sizes (compressed, as pulled), in MB (10^6 bytes)."""
    doc = release.image_manifest(target)
    return round(sum(d.size for d in doc.layers) / MB, 2) if doc is not None else None


def _attach(
    resolved: Location, report: TestReport, wanted: bool, key: PrivateKey | None
) -> tuple[Descriptor | None, str]:
    if not wanted:
        return None, "not attached (--no-attach)"
    try:
        desc = attach_report(resolved.target, report, key)
    except RegistryError as e:
        if key is not None:  # signed evidence was asked for: a run without it is not what CI wanted
            raise RegistryError(
                f"{resolved.display} refused the signed test report ({e.message}); the run "
                f"{'passed' if report.passed else 'failed'} but left no evidence",
                hint="check push access to the repository, or run without --key",
            ) from None
        # pull-only credentials, a read-only registry: the run itself still stands
        return None, f"not attached: {resolved.display} refused the report ({e.message})"
    except PermissionError as e:
        return None, f"not attached: cannot write to {resolved.display} ({e.strerror})"
    return desc, f"attached to {resolved.display} as {desc.digest}"
