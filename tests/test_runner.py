"""`modelpack test`'s pure parts: gates, cases, latency, the report and JUnit, and report lookup."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from modelpack.errors import TestNotRunError, UsageError
from modelpack.evidence.evidence import ANN_PASSED, REPORT_TYPE, passing_report
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest
from modelpack.record.cases import parse_cases
from modelpack.record.record import Record
from modelpack.release.view import ReleaseView
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.cases import CaseResult, LatencyError, measure_latency, run_cases
from modelpack.testing.gates import GateResult, evaluate_gates, latency_of, percentile
from modelpack.testing.report import ReleaseInfo, TestReport, attach_report, junit_xml
from modelpack.testing.testrun import choose_runtime

CASES = parse_cases(
    {
        "cases": [
            {
                "name": "one",
                "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}],
                "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [2]}],
            },
            {
                "name": "two",
                "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [2.0]}],
                "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [4]}],
            },
        ]
    },
    "cases.json",
)


def doubling(body: dict[str, Any]) -> tuple[int, Any]:
    x = body["inputs"][0]["data"][0]
    return 200, {"outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [int(x * 2)]}]}


def test_gates_pass_fail_and_name_unknown_metrics() -> None:
    results = evaluate_gates(
        ["accuracy >= 0.9", "accuracy >= 0.99", "latency_p95_ms <= 50", "image_size_mb < 100", "recall > 1"],
        {"accuracy": 0.95, "latency_p95_ms": 12.0},
    )
    assert [r.passed for r in results] == [True, False, True, False, False]
    assert results[1].detail == "accuracy = 0.95 fails >= 0.99"
    assert results[1].value == 0.95
    assert "image_size_mb was not measured" in results[3].detail and results[3].value is None
    assert "recall is not a metric of this release" in results[4].detail
    assert "accuracy" in results[4].detail  # says which metrics exist


def test_a_malformed_gate_is_a_failing_gate() -> None:
    (result,) = evaluate_gates(["accuracy => 0.9"], {"accuracy": 1.0})
    assert not result.passed and "not a gate" in result.detail


def test_percentiles_are_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 95) == 95.0
    assert percentile(samples, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    lat = latency_of([3.0, 1.0, 2.0])
    assert (lat.p50_ms, lat.p95_ms, lat.p99_ms, lat.requests) == (2.0, 3.0, 3.0, 3)


def test_cases_pass_fail_and_http_errors() -> None:
    assert run_cases(CASES, doubling) == (CaseResult("one", True, ()), CaseResult("two", True, ()))

    def off_by_one(body: dict[str, Any]) -> tuple[int, Any]:
        status, out = doubling(body)
        out["outputs"][0]["data"][0] += 1
        return status, out

    one, _ = run_cases(CASES, off_by_one)
    assert not one.passed and one.problems == ("output 'y'[0]: 3, expected 2",)

    def failing(_body: dict[str, Any]) -> tuple[int, Any]:
        return 500, {"error": "handler exploded"}

    assert run_cases(CASES, failing)[0].problems == ("HTTP 500: handler exploded",)

    def dropped(_body: dict[str, Any]) -> tuple[int, Any]:
        raise ConnectionError("reset by peer")

    assert "reset by peer" in run_cases(CASES, dropped)[0].problems[0]


def test_latency_times_n_requests_after_a_warmup() -> None:
    calls: list[int] = []
    ticks = iter(float(t) / 1000 for t in range(0, 1000, 2))  # each request takes 2 ms on this clock

    def infer(body: dict[str, Any]) -> tuple[int, Any]:
        calls.append(1)
        return doubling(body)

    lat = measure_latency(CASES[0].request(), infer, 5, clock=lambda: next(ticks))
    assert len(calls) == 6  # one warm-up
    assert lat.requests == 5 and lat.p50_ms == pytest.approx(2.0)
    with pytest.raises(LatencyError, match="HTTP 503"):
        measure_latency(CASES[0].request(), lambda _b: (503, "busy"), 3)


def _report(cases: tuple[CaseResult, ...], gates: tuple[GateResult, ...], digest: str) -> TestReport:
    return TestReport(
        reference="iris:1.0.0",
        release=ReleaseInfo(digest, mt.OCI_INDEX, 100, "iris", "1.0.0", "sha256:" + "b" * 64, None),
        runtime="local",
        runtime_note="test",
        started="2026-01-01T00:00:00.000000Z",
        finished="2026-01-01T00:00:01.000000Z",
        cases=cases,
        gates=gates,
        latency=latency_of([1.0, 2.0]),
        image_size_mb=None,
    )


def test_junit_counts_and_failures() -> None:
    cases = (CaseResult("ok", True, ()), CaseResult("bad", False, ("output 'y'[0]: 3, expected 2",)))
    gates = (
        GateResult("accuracy >= 0.99", 0.95, False, "accuracy = 0.95 fails >= 0.99"),
        GateResult("latency_p95_ms <= 50", 2.0, True, "ok"),
    )
    report = _report(cases, gates, "sha256:" + "a" * 64)
    assert not report.passed
    assert report.failures == ("case bad", "gate accuracy >= 0.99")
    root = ET.fromstring(junit_xml(report))
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    testcases = suite.findall("testcase")
    assert [t.get("name") for t in testcases] == ["ok", "bad", "accuracy >= 0.99", "latency_p95_ms <= 50"]
    failed = {t.get("name"): t.find("failure") for t in testcases}
    assert failed["ok"] is None and failed["latency_p95_ms <= 50"] is None
    bad_failure = failed["bad"]
    assert bad_failure is not None and bad_failure.get("message") == "output 'y'[0]: 3, expected 2"
    body = json.loads(report.to_bytes())
    assert body["passed"] is False and body["release"]["digest"] == "sha256:" + "a" * 64
    assert body["cases"][1] == {"name": "bad", "passed": False, "problems": ["output 'y'[0]: 3, expected 2"]}
    assert body["latency"]["latency_p50_ms"] == 1.0


def _subject(store: LayoutStore, tag: str) -> str:
    """A small manifest in the store to hang reports on; returns its digest."""
    config = store.put_blob_bytes(mt.EMPTY_JSON, mt.OCI_EMPTY)
    layer = store.put_blob_bytes(tag.encode(), "application/octet-stream")
    manifest = Manifest(config=config, layers=(layer,), artifact_type="application/x-test")
    stored = store.put_document(manifest)
    store.put_manifest(tag, store.get_manifest(stored.digest))
    return stored.digest


def test_passing_report_is_for_exactly_that_digest_and_the_newest_pass(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")
    first, second = _subject(store, "a"), _subject(store, "b")
    ok = (CaseResult("c", True, ()),)
    bad = (CaseResult("c", False, ("wrong",)),)

    def report(digest: str, cases: tuple[CaseResult, ...], finished: str) -> TestReport:
        base = _report(cases, (), digest)
        info = ReleaseInfo(
            digest, mt.OCI_MANIFEST, len(store.get_manifest(digest).raw), "x", "1", digest, None
        )
        return TestReport(**{**base.__dict__, "release": info, "finished": finished})

    assert passing_report(store, first) is None
    failed = attach_report(store, report(first, bad, "2026-01-01T00:00:05.000000Z"))
    assert failed.annotations[ANN_PASSED] == "false"
    assert passing_report(store, first) is None  # a failing report does not count
    older = attach_report(store, report(first, ok, "2026-01-01T00:00:01.000000Z"))
    newer = attach_report(store, report(first, ok, "2026-01-01T00:00:02.000000Z"))
    found = passing_report(store, first)
    assert isinstance(found, Descriptor) and found.digest == newer.digest != older.digest
    assert found.artifact_type == REPORT_TYPE
    assert passing_report(store, second) is None  # reports of another digest never count


def _view(image: bool) -> ReleaseView:
    digest = "sha256:" + "c" * 64
    return ReleaseView(
        digest=digest,
        media_type=mt.OCI_INDEX,
        is_index=True,
        record=Record(name="iris", version="1.0.0", created="2026-01-01T00:00:00Z"),
        bundle=Descriptor(mt.OCI_MANIFEST, digest, 10),
        bundle_manifest=None,
        image=Descriptor(mt.OCI_MANIFEST, "sha256:" + "d" * 64, 10) if image else None,
    )


def test_runtime_choice(tmp_path: Path) -> None:
    up, down = (lambda: True), (lambda: False)
    with Targets(store_path=tmp_path / "store") as targets:
        remote = targets.open("127.0.0.1:5000/acme/iris:1.0.0")
        layout = targets.open(f"oci:{tmp_path / 'layout'}:1.0.0")
        assert choose_runtime(remote, _view(True), "auto", up)[0] == "docker"
        assert choose_runtime(remote, _view(True), "auto", down) == ("local", "no Docker engine answered")
        assert choose_runtime(remote, _view(False), "auto", up) == (
            "local",
            "the release has no serving image",
        )
        assert choose_runtime(layout, _view(True), "auto", up)[0] == "local"
        assert choose_runtime(remote, _view(True), "local", up)[0] == "local"
        # a release outside a registry runs in the engine too: its image is loaded from the store
        assert choose_runtime(layout, _view(True), "docker", up) == (
            "docker",
            "--runtime docker (image loaded from the store)",
        )
        with pytest.raises(UsageError, match="no serving image"):
            choose_runtime(remote, _view(False), "docker", up)
        with pytest.raises(TestNotRunError, match="no Docker engine answers"):
            choose_runtime(remote, _view(True), "docker", down)


def test_a_remote_engine_publishes_the_port_a_local_one_shares_the_host_network() -> None:
    """`modelpack test` against a remote engine (a CI service container) used host networking, which
    puts the runtime on the engine's machine, where nothing here can reach it. The engine here has no
    bridge (no port publishing), so the published path is decided here and not run."""
    from modelpack.testing.container import placement

    for local in (None, "", "unix:///var/run/docker.sock", "npipe:////./pipe/docker", "tcp://127.0.0.1:2375",
                  "tcp://localhost:2376", "tcp://[::1]:2375"):  # fmt: skip
        p = placement(local)
        assert p.host_network and p.bind == "127.0.0.1", local
    for remote in ("tcp://docker:2375", "tcp://10.0.0.5:2376", "ssh://ci@build-host"):
        p = placement(remote)
        assert not p.host_network and p.bind == "0.0.0.0", remote
