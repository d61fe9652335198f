"""A project `modelpack init` generates builds and passes its own golden cases as generated.

Without an engine: `modelpack build --no-image`, the bundle unpacked, the runtime (`python -m
modelpack.serve`) serving it on 127.0.0.1, every case checked with Case.compare. With the engine: the
serving image built on the test registry's base and the generated workflows' own `run:` steps executed
(build, push, test, promote, prod, rollback) against the test registry, as GitHub would run them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from support.clirun import run_cli

from modelpack import init as scaffold
from modelpack.packfile import load_packfile
from modelpack.record.cases import load_cases
from modelpack.store.layout import LayoutStore
from modelpack.testing.container import wait_ready
from modelpack.trust import keys
from modelpack.unpack import unpack

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EPOCH = "1700000000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(config: Mapping[str, object], log: Path, timeout: float = 60) -> Iterator[str]:
    """The runtime as a process on a free loopback port; yields its URL once ready, stops it by pid."""
    port = _free_port()
    config_path = log.with_suffix(".json")
    config_path.write_text(json.dumps({**config, "host": "127.0.0.1", "port": port}))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelpack.serve", "--config", str(config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url, timeout, alive=lambda: proc.poll() is None):
            pytest.fail(f"runtime not ready (exit code {proc.poll()}) after {timeout}s:\n{log.read_text()}")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("variant", ["python", "onnx", "onnx-with-model"])
def test_generated_project_builds_and_serves_its_golden_cases(tmp_path: Path, variant: str) -> None:
    proj = tmp_path / "proj"
    args = ["--handler", "python"] if variant == "python" else ["--handler", "onnx"]
    if variant == "onnx-with-model":
        args += ["--model", str(EXAMPLES / "iris-onnx" / "model.onnx")]
    assert run_cli("init", str(proj), *args).returncode == 0
    store = tmp_path / "store"
    built = run_cli(
        "build", "--no-image", "--store", str(store), "--json", cwd=proj, env={"SOURCE_DATE_EPOCH": EPOCH}
    )
    assert built.returncode == 0, built.stderr
    tag = json.loads(built.stdout)["tag"]
    assert tag == "proj:0.1.0"

    # serve what the bundle holds (not the project directory): the files the image would get
    dest = tmp_path / "unpacked"
    unpack(LayoutStore(store), tag, dest)
    pf = load_packfile(proj)
    config: dict[str, object] = {
        "name": pf.name,
        "handler": pf.code.handler,
        "model_dir": str(dest / "models"),
        "code_dir": str(dest / "code"),
    }
    if pf.code.builtin:
        config["model"] = pf.relative(pf.model.files[0])
    cases = load_cases(proj / "cases.json")
    with _serving(config, tmp_path / "serve.log") as url, httpx.Client(timeout=10) as http:
        for case in cases:
            response = http.post(f"{url}/v2/models/{pf.name}/infer", json=case.request())
            assert response.status_code == 200, response.text
            assert case.compare(response.json()) == (), case.name
        # the cases are not vacuous: a wrong answer is caught by the same comparison
        wrong = response.json()
        wrong["outputs"][0]["data"] = [float(x) + 1 for x in wrong["outputs"][0]["data"]]
        assert case.compare(wrong) != ()


def digest(ref: str) -> str:
    """The digest of the manifest at `ref`, read by skopeo (an independent client)."""
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# --- the generated workflows, run step by step against the test registry ---------------------------

_EXPR = re.compile(r"\$\{\{\s*([\w.]+)\s*\}\}")
_IF = re.compile(r"(vars\.\w+)\s*(!=|==)\s*''")


class WorkflowRun:
    """Runs the `run:` steps of a workflow's job as GitHub does (bash -eo pipefail, GITHUB_ENV between
    steps, the job's env and defaults), skipping `uses:` steps and the ones named in `skip`. `replace`
    rewrites text in scripts (the runner's `localhost:5000` is the test registry here)."""

    def __init__(
        self,
        path: Path,
        workdir: Path,
        env: Mapping[str, str],
        tmp: Path,
        context: Mapping[str, str] | None = None,
    ) -> None:
        self.workflow = yaml.safe_load(path.read_text())
        self.workdir = workdir
        self.env = dict(env)
        self.tmp = tmp
        self.context = dict(context or {})  # secrets.X and vars.X, as the repository settings give them

    def job(
        self,
        name: str,
        *,
        sha: str,
        inputs: Mapping[str, str] | None = None,
        skip: tuple[str, ...] = ("Install modelpack",),
        replace: Mapping[str, str] | None = None,
        env_overrides: Mapping[str, str] | None = None,
    ) -> list[subprocess.CompletedProcess[str]]:
        context = {**self.context, **{f"inputs.{k}": v for k, v in (inputs or {}).items()}}
        github_env = self.tmp / f"github-env-{name}-{sha[:7]}"
        github_env.write_text("")
        runner_temp = self.tmp / f"runner-{name}-{sha[:7]}"
        runner_temp.mkdir(exist_ok=True)
        env = {
            **self.env,
            **{k: self._eval(str(v), context) for k, v in self.workflow.get("env", {}).items()},
            "GITHUB_SHA": sha,
            "GITHUB_ENV": str(github_env),
            "RUNNER_TEMP": str(runner_temp),
            **(env_overrides or {}),
        }
        cwd = self.workdir / self.workflow.get("defaults", {}).get("run", {}).get("working-directory", ".")
        results = []
        for step in self.workflow["jobs"][name]["steps"]:
            if "run" not in step or step.get("name") in skip or not self._condition(step, context):
                continue
            script = step["run"]
            for old, new in (replace or {}).items():
                script = script.replace(old, new)
            step_env = {k: self._eval(str(v), context) for k, v in step.get("env", {}).items()}
            result = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                env={**env, **step_env},
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"step {step.get('name')!r}:\n{result.stdout}\n{result.stderr}"
            results.append(result)
            for line in github_env.read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
        return results

    @staticmethod
    def _condition(step: Mapping[str, object], context: Mapping[str, str]) -> bool:
        """A step's `if:` as GitHub evaluates the forms the templates use: `always()`, `vars.X != ''`
        and `vars.X == ''` (an unset repository variable is the empty string); any other form fails the test
        rather than run or skip a step by guess."""
        cond = step.get("if")
        if cond is None or str(cond).strip() == "always()":  # every earlier step succeeds here
            return True
        m = _IF.fullmatch(str(cond).strip())
        if m is None:
            pytest.fail(f"step {step.get('name')!r}: if: {cond!r} is not a form this runner evaluates")
        value = context.get(m.group(1), "")
        return (value != "") if m.group(2) == "!=" else (value == "")

    @staticmethod
    def _eval(value: str, context: Mapping[str, str]) -> str:
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in context:
                pytest.fail(f"expression {m.group(0)} has no value in this test: pass it")
            return context[m.group(1)]

        return _EXPR.sub(sub, value)


@pytest.mark.engine
@pytest.mark.slow
def test_generated_workflows_release_promote_and_roll_back(
    tmp_path: Path, registry, repo: str, docker_engine
) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "house-prices"
    dest = f"{registry.host}/{repo}"
    scaffold.init(proj, handler="python", registry=dest)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "MODELPACK_STORE": str(tmp_path / "store"),
        "MODELPACK_BASE_IMAGE": docker_engine.base_ref,  # python:3.11-slim from Docker Hub on GitHub
        "SOURCE_DATE_EPOCH": EPOCH,
        "TESTCONTAINERS_RYUK_DISABLED": "true",
    }
    env.pop("MODELPACK_VERBOSE", None)
    # the repository's settings: a signing key secret (encrypted, with its password) and its public half
    # as a variable, so the release job signs and the prod job sets a policy requiring that signature
    signing = keys.generate(tmp_path / "release", b"ci-password")
    settings = {
        "secrets.MODELPACK_SIGNING_KEY": signing.private.read_text(),
        "secrets.MODELPACK_KEY_PASSWORD": "ci-password",
        "vars.MODELPACK_SIGNING_PUB": signing.public.read_text(),
    }
    pipeline = WorkflowRun(proj / ".github/workflows/modelpack.yml", proj, env, tmp_path, settings)
    sha_a, sha_b = "a" * 40, "b" * 40

    # a pull request: built, pushed to the runner's throwaway registry, tested in its serving image
    pipeline.job("check", sha=sha_a, replace={"localhost:5000": registry.host})
    assert digest(f"{registry.host}/house-prices:0.1.0-aaaaaaa").startswith("sha256:")
    report = json.loads((tmp_path / "runner-check-aaaaaaa" / "report.json").read_text())
    assert report["runtime"] == "docker" and report["passed"] is True  # in the serving image
    assert [(c["name"], c["passed"]) for c in report["cases"]] == [("one-row", True), ("two-rows", True)]
    assert (tmp_path / "runner-check-aaaaaaa" / "junit.xml").exists()

    # two pushes to main: each a release of its own, tested, then staging
    pipeline.job("release", sha=sha_a)
    pipeline.job("release", sha=sha_b)
    # a release (published) of commit A, then a manual run for B: prod moves twice
    pipeline.job("prod", sha=sha_a, inputs={"version": ""})
    pipeline.job("prod", sha="c" * 40, inputs={"version": "0.1.0-bbbbbbb"})

    a, b = digest(f"{dest}:0.1.0-aaaaaaa"), digest(f"{dest}:0.1.0-bbbbbbb")
    assert a != b  # the commit is in the version, so in the record
    assert digest(f"{dest}:staging") == b and digest(f"{dest}:prod") == b
    # prod's policy, set by the first prod run, was met by each signed, attested, tested release
    shown = subprocess.run(
        ["modelpack", "policy", "show", dest, "prod", "--json"], env=env, capture_output=True, text=True
    )
    assert [r["kind"] for r in json.loads(shown.stdout)["requirements"]] == [
        "test", "provenance", "sbom", "signature"
    ]  # fmt: skip
    events = subprocess.run(
        ["modelpack", "history", dest, "prod", "--json"], env=env, capture_output=True, text=True
    )
    newest = json.loads(events.stdout)["events"][0]
    checked = {c["kind"]: c for c in newest["evidence"][1:]}
    assert all(c["ok"] for c in checked.values())
    # the CI key signed the release, its provenance and its test evidence: the policy asked for all three
    assert {k: c["signer"] for k, c in checked.items()} == {
        "test": signing.keyid, "provenance": signing.keyid, "sbom": None, "signature": signing.keyid
    }  # fmt: skip

    # the incident button: prod back to the release before, and the history says so
    rollback = WorkflowRun(proj / ".github/workflows/modelpack-rollback.yml", proj, env, tmp_path, settings)
    steps = rollback.job(
        "rollback", sha=sha_b, inputs={"environment": "prod", "version": "", "reason": "latency spike"}
    )
    assert digest(f"{dest}:prod") == a
    history = steps[-1].stdout
    assert "0.1.0-aaaaaaa" in history and "0.1.0-bbbbbbb" in history and "latency spike" in history


@pytest.mark.engine
@pytest.mark.slow
def test_release_example_workflow_runs_against_the_test_registry(
    tmp_path: Path, registry, repo: str, docker_engine
) -> None:  # type: ignore[no-untyped-def]
    """.github/workflows/release-example.yml's steps, with the test registry in place of the service
    container and the debootstrap base in place of Docker Hub's python:3.11-slim."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "MODELPACK_STORE": str(tmp_path / "store"),
        "TESTCONTAINERS_RYUK_DISABLED": "true",
    }
    env.pop("MODELPACK_VERBOSE", None)
    dest = f"{registry.host}/{repo}"
    run = WorkflowRun(ROOT / ".github/workflows/release-example.yml", ROOT, env, tmp_path)
    steps = run.job(
        "iris",
        sha="d" * 40,
        skip=("Install modelpack", "Base image in the local registry"),
        env_overrides={"REPO": dest, "BASE": docker_engine.base_ref},
    )
    assert digest(f"{dest}:staging") == digest(f"{dest}:1.0.0")
    report = json.loads((tmp_path / "runner-iris-ddddddd" / "report.json").read_text())
    assert report["passed"] is True and len(report["cases"]) == 6
    assert "1.0.0" in steps[-1].stdout  # the history of staging names the promoted version


def test_workflow_build_tags_sort_by_commit_time_as_prune_orders_them(tmp_path: Path) -> None:
    """The tags the generated workflow writes for two commits of one version: the later commit sorts
    newer both as text and in prune's order (an all-digit short sha was a PEP 440 post-release there)."""
    from modelpack.retention.retention import Version, order_newest_first

    proj = tmp_path / "house-prices"
    scaffold.init(proj, handler="python", registry="127.0.0.1:5000/acme/house-prices")
    workflow = yaml.safe_load((proj / ".github/workflows/modelpack.yml").read_text())
    step = next(s for s in workflow["jobs"]["release"]["steps"] if s.get("name") == "Version and repository")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    tags = []
    for when in ("2026-12-01T09:00:00+0100", "2026-12-02T08:00:00+0000"):
        env = {**os.environ, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when}
        if not (proj / ".git").exists():
            subprocess.run([*git, "init", "-q"], cwd=proj, check=True)
        subprocess.run([*git, "add", "-A"], cwd=proj, check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", when], cwd=proj, check=True, env=env)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=proj, capture_output=True, text=True).stdout
        github_env = tmp_path / "github-env"
        github_env.write_text("")
        run_env = {**os.environ, "GITHUB_SHA": sha.strip(), "GITHUB_ENV": str(github_env), "REPOSITORY": "r"}
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", step["run"]], cwd=proj, env=run_env, text=True
        )
        assert done.returncode == 0
        tags.append(dict(line.split("=", 1) for line in github_env.read_text().splitlines())["VERSION"])
    assert tags[0] == f"0.1.0-20261201080000-{tags[0][-7:]}"  # UTC
    assert tags[1].startswith("0.1.0-20261202080000-") and sorted(tags) == tags
    ordered = order_newest_first(Version(t, f"sha256:{i:064x}") for i, t in enumerate(tags))
    assert [v.tag for v in ordered] == tags[::-1]
