"""`modelpack test` on real releases: the serving image on the real engine, the local runtime on the image's
own packages, failing gates and cases, a runtime that never gets ready, and reports in the registry."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from docker import errors as docker_errors
from fixtures.registry import RegistryProcess
from support.clirun import run_cli, script

from modelpack import api
from modelpack.errors import TestNotRunError
from modelpack.evidence.evidence import ANN_PASSED, ANN_RUNTIME, REPORT_TYPE, passing_report
from modelpack.registry.referrers import fallback_tag
from modelpack.release.view import load_release
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.container import free_port
from modelpack.testing.local import local_server, reference_command
from modelpack.testing.testrun import TestOptions, release_ref

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

# A handler that also answers where numpy came from, so a test sees which packages the process imported.
WHERE_HANDLER = """
import os

import numpy as np
from handler import LinearModel


class Where(LinearModel):
    def predict(self, inputs):
        out = super().predict(inputs)
        out["numpy_file"] = np.array([np.__file__], dtype=object)
        out["numpy_version"] = np.array([np.__version__], dtype=object)
        out["probe"] = np.array([os.environ.get("MODELPACK_PROBE", "unset")], dtype=object)
        return out
"""
BROKEN_HANDLER = """
class Broken:
    def load(self, model_dir):
        raise RuntimeError("weights are corrupt: refusing to start")

    def predict(self, inputs):
        return {}
"""

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Store:
    store: LayoutStore
    base_ref: str

    def build(self, project: Path, version: str | None = None) -> api.BuildResult:
        return api.build(
            Targets(store_path=self.store.root),
            project,
            image=True,
            base=self.base_ref,
            version=version,
            environ=EPOCH,
        )

    def targets(self) -> Targets:
        return Targets(store_path=self.store.root)


@pytest.fixture(scope="session")
def runner_store(image_store: LayoutStore, docker_engine) -> Store:  # type: ignore[no-untyped-def]
    # The session's shared image store: the deps layer is resolved and installed once for every variant.
    return Store(image_store, docker_engine.base_ref)


@pytest.fixture(scope="session")
def iris_release(runner_store: Store) -> api.BuildResult:
    return runner_store.build(EXAMPLES / "iris-onnx")


def _variant(tmp_path: Path, example: str, name: str) -> Path:
    proj = tmp_path / name
    shutil.copytree(EXAMPLES / example, proj)
    packfile = proj / "modelpack.yaml"
    packfile.write_text(packfile.read_text().replace(f"name: {_name(example)}", f"name: {name}", 1))
    return proj


def _name(example: str) -> str:
    return {"iris-onnx": "iris-onnx", "custom-handler": "house-prices"}[example]


def _junit(path: Path) -> ET.Element:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return suite


@pytest.mark.engine
def test_docker_runtime_on_a_pushed_release_passes_and_attaches(
    runner_store: Store,
    iris_release: api.BuildResult,
    registry: RegistryProcess,
    repo: str,
    tmp_path: Path,
    docker_engine,  # type: ignore[no-untyped-def]
) -> None:
    dest = f"{registry.host}/{repo}"
    with runner_store.targets() as targets:
        _r = api.push(targets, dest, source=iris_release.tag)
        copied, pushed = _r.copy, _r.destination
    report, junit = tmp_path / "out" / "report.json", tmp_path / "junit.xml"
    cli = run_cli(
        "test", pushed, "--runtime", "docker", "--report", str(report), "--junit", str(junit),
        "--store", str(runner_store.store.root), "--requests", "50",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    body = json.loads(report.read_text())
    assert body["passed"] is True and body["runtime"] == "docker"
    assert body["release"]["digest"] == copied.digest
    pinned = f"{dest}@{body['release']['image']}"
    with pytest.raises(docker_errors.ImageNotFound):  # pulled for the test, removed after it
        docker_engine.client.images.get(pinned)
    assert "@sha256:" in body["runtimeNote"]  # the engine ran the image pinned by digest
    assert len(body["cases"]) == 6 and all(c["passed"] for c in body["cases"])
    assert [g["gate"] for g in body["gates"]] == [
        "accuracy >= 0.9",
        "f1_macro >= 0.9",
        "latency_p95_ms <= 50",
    ]
    assert body["latency"]["requests"] == 50 and 0 < body["latency"]["latency_p50_ms"] <= 50
    assert body["imageSizeMb"] > 1
    suite = _junit(junit)
    assert (suite.get("tests"), suite.get("failures")) == ("9", "0")

    # the registry (distribution 2.8: no referrers API) lists the report through the fallback tag
    with Targets() as targets:
        target = targets.open(pushed).target
        assert fallback_tag(copied.digest) in target.list_tags()
        (listed,) = target.referrers(copied.digest, REPORT_TYPE)
        assert listed.annotations[ANN_PASSED] == "true" and listed.annotations[ANN_RUNTIME] == "docker"
        found = passing_report(target, copied.digest)
        assert found is not None and found.digest == listed.digest
        bundle_digest = body["release"]["bundle"]
        assert passing_report(target, bundle_digest) is None  # not for another digest
    assert "attached to" in cli.stderr

    # the local runtime on the same registry reference: files and the image's layers come from the registry
    fresh = tmp_path / "fresh-store"
    with Targets(store_path=fresh) as targets:
        local = api.test(targets, pushed, TestOptions(runtime="local", requests=10, attach=False))
    assert local.report.passed and local.report.runtime == "local" and local.attached is None
    assert "serving image's packages" in local.report.runtime_note
    assert any((d / "opt" / "modelpack" / "deps").is_dir() for d in (fresh / "cache" / "layers").iterdir())


@pytest.mark.engine
def test_serve_a_release_reference(runner_store: Store, iris_release: api.BuildResult) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(script()),
            "serve",
            iris_release.tag,
            "--port",
            str(port),
            "--store",
            str(runner_store.store.root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        meta = httpx.get(f"{url}/metadata", timeout=5).json()
        assert meta["index_digest"] == iris_release.digest
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "serving image's packages" in err


@pytest.mark.engine
def test_docker_runtime_on_the_local_store_loads_the_image_and_removes_it(
    runner_store: Store,
    iris_release: api.BuildResult,
    docker_engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    # no registry holds the release: its image goes from the store's blobs (and the base image's
    # registry, for the base layers) to the engine's load API
    images_before = {i.id for i in docker_engine.client.images.list(all=True)}
    with runner_store.targets() as targets:
        opened = targets.open(iris_release.tag)
        release = load_release(opened.target, iris_release.digest)
        assert release.image is not None
        image_id = json.loads(opened.target.get_manifest(release.image.digest).raw)["config"]["digest"]
    report = tmp_path / "report.json"
    cli = run_cli(
        "test", iris_release.tag, "--runtime", "docker", "--store", str(runner_store.store.root),
        "--requests", "20", "--report", str(report),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    body = json.loads(report.read_text())
    assert body["passed"] is True and body["runtime"] == "docker"
    assert len(body["cases"]) == 6 and all(c["passed"] for c in body["cases"])
    assert "loaded from" in body["runtimeNote"]
    assert "runtime: docker (" in cli.stderr  # the CLI says which runtime produced the report
    with runner_store.targets() as targets:
        (listed, *_) = sorted(
            targets.store.referrers(iris_release.digest, REPORT_TYPE),
            key=lambda d: d.annotations.get("dev.modelpack.test.created", ""),
            reverse=True,
        )
    assert listed.annotations[ANN_RUNTIME] == "docker"
    # the engine is as the test found it: a loaded image is removed, one it already had is kept
    images_after = {i.id for i in docker_engine.client.images.list(all=True)}
    if image_id in images_before:
        assert image_id in images_after and "already in the Docker engine" in cli.stderr
    else:
        assert "into the Docker engine (" in cli.stderr and image_id not in images_after


@pytest.mark.engine
def test_local_runtime_runs_on_the_image_deps_layer(runner_store: Store, tmp_path: Path) -> None:
    proj = _variant(tmp_path, "custom-handler", "where-numpy")
    (proj / "where.py").write_text(WHERE_HANDLER)
    packfile = proj / "modelpack.yaml"
    text = packfile.read_text().replace("paths: [handler.py]", "paths: [handler.py, where.py]")
    text = text.replace("handler: handler:LinearModel", "handler: where:Where")
    packfile.write_text(text + "\nserving:\n  env:\n    MODELPACK_PROBE: from-the-image\n")
    built = runner_store.build(proj)
    with runner_store.targets() as targets:
        outcome = api.test(targets, built.tag, TestOptions(runtime="auto", requests=20))
        assert outcome.report.passed, outcome.report.to_json()
        assert outcome.report.runtime == "local"  # auto: a local-store release cannot be pulled by an engine
        assert "serving image's packages" in outcome.report.runtime_note
        assert outcome.attached is not None
        assert passing_report(runner_store.store, built.digest) is not None

        here = targets.open(built.tag)
        command = reference_command(here, release_ref(here) or "", targets.store_path / "cache")
        deps = Path(command.pythonpath[1])
        assert deps.parts[-3:] == ("opt", "modelpack", "deps") and (deps / "numpy").is_dir()
        assert "-S" in command.argv  # no site-packages: only the image's packages can be imported
        with local_server(command) as running, httpx.Client() as http:
            request = {
                "inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [3, 80, 10]}]
            }
            answer = http.post(f"{running.url}/v2/models/where-numpy/infer", json=request)
            assert answer.status_code == 200, answer.text
            outputs = {o["name"]: o["data"][0] for o in answer.json()["outputs"]}
    assert Path(outputs["numpy_file"]).resolve().is_relative_to(deps.resolve())
    assert outputs["numpy_version"] == "2.4.6"  # examples/custom-handler/requirements.lock
    assert outputs["probe"] == "from-the-image"  # the image's Env (serving.env) reaches the process


@pytest.mark.engine
def test_a_failing_gate_exits_1_naming_it(runner_store: Store, tmp_path: Path) -> None:
    proj = _variant(tmp_path, "iris-onnx", "iris-strict")
    packfile = proj / "modelpack.yaml"
    packfile.write_text(packfile.read_text().replace("- accuracy >= 0.9 ", "- accuracy >= 0.99", 1))
    built = runner_store.build(proj)
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    cli = run_cli(
        "test", built.tag, "--store", str(runner_store.store.root), "--requests", "20",
        "--junit", str(junit), "--report", str(report), "--no-attach",
    )  # fmt: skip
    assert cli.returncode == 1, cli.stderr
    assert "gate accuracy >= 0.99" in cli.stderr.splitlines()[-1]
    suite = _junit(junit)
    assert (suite.get("tests"), suite.get("failures")) == ("9", "1")
    (failed,) = [t for t in suite.findall("testcase") if t.find("failure") is not None]
    assert failed.get("name") == "accuracy >= 0.99"
    body = json.loads(report.read_text())
    assert body["passed"] is False
    with runner_store.targets() as targets:  # --no-attach: nothing attached
        assert targets.store.referrers(built.digest, REPORT_TYPE) == []


@pytest.mark.engine
def test_a_wrong_golden_case_fails_naming_the_case(runner_store: Store, tmp_path: Path) -> None:
    proj = _variant(tmp_path, "custom-handler", "house-wrong")
    cases = json.loads((proj / "cases.json").read_text())
    cases["cases"][1]["outputs"][0]["data"] = [[45.0], [441.0]]
    (proj / "cases.json").write_text(json.dumps(cases))
    built = runner_store.build(proj)
    cli = run_cli("test", built.tag, "--store", str(runner_store.store.root), "--requests", "5", "--json")
    assert cli.returncode == 1, cli.stderr
    assert "case two-houses-nested-data" in cli.stderr and "one-house" not in cli.stderr.splitlines()[-1]
    body = json.loads(cli.stdout)
    by_name = {c["name"]: c for c in body["cases"]}
    assert by_name["one-house"]["passed"] is True
    assert by_name["two-houses-nested-data"]["problems"] == [
        "output 'price'[1]: 440.0, expected 441.0 (tolerance abs 0.001, rel 1e-06)"
    ]
    with runner_store.targets() as targets:  # the failing report is attached, and does not count as a pass
        (listed,) = targets.store.referrers(built.digest, REPORT_TYPE)
        assert listed.annotations[ANN_PASSED] == "false"
        assert passing_report(targets.store, built.digest) is None


@pytest.mark.engine
def test_a_runtime_that_never_gets_ready_shows_its_output(
    runner_store: Store, registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    proj = _variant(tmp_path, "custom-handler", "house-broken")
    (proj / "broken.py").write_text(BROKEN_HANDLER)
    packfile = proj / "modelpack.yaml"
    text = packfile.read_text().replace("paths: [handler.py]", "paths: [handler.py, broken.py]")
    packfile.write_text(text.replace("handler: handler:LinearModel", "handler: broken:Broken"))
    built = runner_store.build(proj)
    with runner_store.targets() as targets:
        with pytest.raises(TestNotRunError) as local:
            api.test(targets, built.tag, TestOptions(runtime="local", ready_timeout=30))
        _r = api.push(targets, f"{registry.host}/{repo}", source=built.tag)
        _, pushed = _r.copy, _r.destination
        with pytest.raises(TestNotRunError) as docker:
            api.test(targets, pushed, TestOptions(runtime="docker", ready_timeout=30))
    for err in (local, docker):
        message = str(err.value)
        assert "exited with code 3" in message, message  # at once, not after the ready timeout
        assert "weights are corrupt: refusing to start" in message  # the runtime's own output
    # the CLI's exit code tells a runner that could not run the model (3) from a failed model (1)
    cli = run_cli("test", built.tag, "--store", str(runner_store.store.root), "--runtime", "local")
    assert cli.returncode == 3, cli.stderr
    with runner_store.targets() as targets:  # nothing was attached for a run that never started
        assert targets.store.referrers(built.digest, REPORT_TYPE) == []


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.engine
def test_sigterm_to_a_local_test_run_leaves_no_runtime(
    runner_store: Store, iris_release: api.BuildResult
) -> None:
    """Issue 21 item 14: `modelpack test --runtime local` stopped by SIGTERM mid-run stops its runtime."""
    cli = subprocess.Popen(
        [str(script()), "test", iris_release.tag, "--store", str(runner_store.store.root),
         "--runtime", "local", "--requests", "1000000", "--no-attach"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        runtime: set[int] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not runtime:
            time.sleep(0.5)
            runtime = {pid for pid in _descendants(cli.pid) if b"modelpack.serve" in _cmdline(pid)}
        assert runtime, "the local runtime never started"
        time.sleep(2)  # the run is timing its million requests now
        cli.send_signal(signal.SIGTERM)
        _, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 130 and "interrupted" in err, err
    deadline = time.monotonic() + 5  # multiprocessing's resource tracker exits a moment after its parent
    while [pid for pid in runtime if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in runtime if _alive(pid)]
