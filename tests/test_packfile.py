"""modelpack.yaml loading: a full valid file, and every refusal names file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.packfiles import CASES, MINIMAL, make_project  # noqa: F401

from modelpack.errors import InputError
from modelpack.packfile import Gate, load_packfile, parse_gate


def load_error(tmp_path: Path, packfile: str, extra: dict[str, str | bytes] | None = None) -> str:
    path = make_project(tmp_path, packfile, extra)
    with pytest.raises(InputError) as info:
        load_packfile(path)
    assert info.value.exit_code == 2
    return str(info.value)


FULL = """\
name: sentiment.v2
version: 1.4.0
description: a demo
license: Apache-2.0
authors: [Ada, Grace]
model:
  paths: [model.onnx]
  format: onnx
  framework: scikit-learn
code:
  paths: [handler.py]
  handler: handler:Model
dependencies:
  lockfile: requirements.lock
  python: 3.10
datasets:
  - name: train
    path: data/train.csv
  - name: test
    path: data/test
    uri: s3://bucket/test/
    package: true
  - name: remote
    uri: https://example.com/data.parquet
metrics:
  file: metrics.json
  dataset: test
  values:
    latency_ms: {value: 3.5, dataset: train}
    recall: 1e-1
params: params.yaml
docs: [README.md]
tests:
  cases: cases.json
  gates: ["accuracy >= 0.9", "latency_p95_ms<=50", "image_size_mb < 2000"]
  latency_requests: 50
serving:
  port: 9000
  env: {THREADS: 4, MODE: fast}
  system_packages: [libgomp1]
  builder: docker
"""


def test_full_packfile_is_typed_and_resolved(tmp_path: Path) -> None:
    pf = load_packfile(make_project(tmp_path, FULL))
    assert pf.name == "sentiment.v2" and pf.version == "1.4.0"
    assert pf.authors == ("Ada", "Grace")
    assert pf.model.format == "onnx" and pf.model.files == (tmp_path / "model.onnx",)
    assert pf.code.module == "handler" and pf.code.class_name == "Model" and not pf.code.builtin
    # `python: 3.10` is the text as written, not the float 3.1
    assert pf.dependencies.python == "3.10"
    assert pf.serving.base_image == "python:3.10-slim"
    assert [d.name for d in pf.datasets] == ["train", "test", "remote"]
    assert pf.datasets[1].package and pf.datasets[1].uri == "s3://bucket/test/"
    assert pf.datasets[2].path is None
    metrics = pf.metrics_dict()
    assert metrics["accuracy"].value == 0.97 and metrics["accuracy"].dataset == "test"
    assert metrics["eval.f1"].value == 0.9
    assert metrics["latency_ms"].dataset == "train" and metrics["recall"].value == 0.1
    assert pf.params_dict() == {"lr": 0.01, "layers": "[64,32]", "opt.name": "adam"}
    assert pf.tests.gates == (
        Gate("accuracy", ">=", 0.9),
        Gate("latency_p95_ms", "<=", 50.0),
        Gate("image_size_mb", "<", 2000.0),
    )
    assert pf.tests.latency_requests == 50
    assert pf.serving.env_dict() == {"MODE": "fast", "THREADS": "4"}
    assert pf.serving.port == 9000 and pf.serving.builder == "docker"
    assert pf.relative(pf.doc_files[0]) == "README.md"
    hash(pf)  # frozen all the way down


def test_minimal_packfile_gets_defaults(tmp_path: Path) -> None:
    pf = load_packfile(make_project(tmp_path, MINIMAL))
    assert pf.version is None
    assert pf.code.handler == "onnx" and pf.code.files == ()
    assert pf.dependencies.python == "3.11"
    assert pf.serving.base_image == "python:3.11-slim" and pf.serving.port == 8080
    assert pf.serving.builder == "daemonless"
    assert pf.tests.gates == () and pf.tests.latency_requests == 100
    assert pf.metrics == () and pf.params == ()


def test_directory_argument_and_model_directories(tmp_path: Path) -> None:
    extra = {
        "weights/a.bin": b"A" * 10,
        "weights/sub/b.bin": b"B",
        "weights/__pycache__/x.pyc": b"junk",
        "weights/.git/HEAD": b"ref",
    }
    pf = load_packfile(
        make_project(tmp_path, MINIMAL.replace("[model.onnx]", "[weights, model.onnx]"), extra)
    )
    assert [pf.relative(f) for f in pf.model.files] == ["model.onnx", "weights/a.bin", "weights/sub/b.bin"]
    assert load_packfile(tmp_path) == pf


def test_wrong_choice_names_line_key_choices_and_suggestion(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL.replace("format: onnx", "format: onnxx"))
    assert msg == (
        f"{tmp_path / 'modelpack.yaml'}:4: model.format: 'onnxx' is not one of onnx, safetensors, pytorch, "
        "gguf, sklearn-pickle, other (did you mean 'onnx'?)"
    )


@pytest.mark.parametrize(
    ("bad", "good", "line", "key"),
    [
        ("modle:", "model:", 2, "modle"),
        ("  format: onnx", "  formt: onnx", 4, "model.formt"),
        ("  lockfile: requirements.lock", "  lokfile: requirements.lock", 6, "dependencies.lokfile"),
    ],
)
def test_unknown_keys_suggest_the_right_one(tmp_path: Path, bad: str, good: str, line: int, key: str) -> None:
    text = MINIMAL.replace(good, bad) if bad == "modle:" else MINIMAL.replace(bad, good)
    msg = load_error(tmp_path, text)
    assert f"modelpack.yaml:{line}: {key}: unknown key (did you mean" in msg


def test_synonyms_get_a_hint_difflib_cannot_give(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL.replace("paths:", "files:"))
    assert "model.files: unknown key (did you mean 'paths'?)" in msg


def test_missing_required_keys(tmp_path: Path) -> None:
    msg = load_error(tmp_path, "name: demo\nmodel: {paths: [model.onnx], format: onnx}\n")
    assert ":1: dependencies: is required" in msg and "lockfile" in msg
    msg = load_error(tmp_path, MINIMAL.replace("  format: onnx\n", ""))
    assert ":3: model.format: is required" in msg


def test_missing_model_file(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL.replace("[model.onnx]", "[model.onnx, missing.bin]"))
    assert ":3: model.paths[1]: 'missing.bin' does not exist" in msg


def test_empty_model_is_refused(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL, {"model.onnx": b""})
    assert "model.paths: every model file is empty (0 bytes)" in msg
    msg = load_error(tmp_path, MINIMAL.replace("[model.onnx]", "[emptydir]"), {"emptydir/.git/x": b"1"})
    assert "model.paths: the model has no files" in msg
    msg = load_error(tmp_path, MINIMAL.replace("paths: [model.onnx]", "paths: []"))
    assert "model.paths: the model has no files" in msg


def test_paths_must_stay_inside_the_project(tmp_path: Path) -> None:
    (tmp_path / "outside.onnx").write_bytes(b"x")
    project = tmp_path / "p"
    project.mkdir()
    msg = load_error(project, MINIMAL.replace("[model.onnx]", "[../outside.onnx]"))
    assert "model.paths[0]: '../outside.onnx' is outside the directory of modelpack.yaml" in msg


def test_dataset_path_that_does_not_exist(tmp_path: Path) -> None:
    text = MINIMAL + "datasets:\n  - name: train\n    path: data/nope.csv\n"
    msg = load_error(tmp_path, text)
    assert ":9: datasets[0].path: 'data/nope.csv' does not exist" in msg


def test_dataset_needs_path_or_uri_and_unique_names(tmp_path: Path) -> None:
    assert "datasets[0]: needs a path, a uri or a ref" in load_error(
        tmp_path, MINIMAL + "datasets:\n  - name: x\n"
    )
    text = MINIMAL + "datasets:\n  - {name: x, uri: s3://a}\n  - {name: x, uri: s3://b}\n"
    assert ":9: datasets[1].name: 'x' is declared twice" in load_error(tmp_path, text)


def test_metrics_file_that_is_not_numbers(tmp_path: Path) -> None:
    msg = load_error(
        tmp_path, MINIMAL + "metrics: metrics.json\n", {"metrics.json": '{"acc": {"top1": "high"}}'}
    )
    assert f"{tmp_path / 'metrics.json'}:1: metric 'acc.top1': 'high' is not a number" in msg
    yaml_metrics = "accuracy: 0.9\nf1: yes\n"
    msg = load_error(tmp_path, MINIMAL + "metrics: m.yaml\n", {"m.yaml": yaml_metrics})
    assert "m.yaml:2: metric 'f1': True is not a number" in msg


def test_metric_dataset_must_be_declared(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "datasets:\n  - {name: iris-test, uri: s3://x}\n"
        + "metrics:\n  file: metrics.json\n  dataset: iris-tset\n"
    )
    msg = load_error(tmp_path, text)
    assert (
        ":11: metrics.dataset: dataset 'iris-tset' is not declared under datasets (did you mean 'iris-test'?)"
        in msg
    )


def test_inline_metric_must_be_a_number(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL + "metrics:\n  values:\n    acc: high\n")
    assert ":9: metrics.values.acc: expected a number, got 'high'" in msg


def test_gates_are_parsed_and_refused_with_a_hint(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL + "tests:\n  gates: ['accuracy => 0.9']\n")
    assert ":8: tests.gates[0]: 'accuracy => 0.9' is not a gate (write '>=' instead of '=>')" in msg
    assert parse_gate("a.b-c/d==1e-3") == Gate("a.b-c/d", "==", 0.001)
    assert Gate("accuracy", ">=", 0.9).passes(0.9) and not Gate("accuracy", ">", 0.9).passes(0.9)
    assert str(Gate("latency_p95_ms", "<=", 50)) == "latency_p95_ms <= 50"
    with pytest.raises(InputError, match="threshold 'high' is not a number"):
        parse_gate("accuracy >= high")


def test_handler_module_must_be_in_code_paths(tmp_path: Path) -> None:
    text = MINIMAL + "code:\n  paths: [README.md]\n  handler: handler:Model\n"
    msg = load_error(tmp_path, text)
    assert (
        ":9: code.handler: module 'handler' is not in code.paths (add handler.py or handler/__init__.py"
        in msg
    )
    text = MINIMAL + "code:\n  handler: 'handler'\n"
    assert "code.handler: 'handler' is neither a built-in nor module:Class" in load_error(tmp_path, text)


def test_a_handler_class_typo_is_found_at_build_not_in_the_container(tmp_path: Path) -> None:
    code = "import numpy as np\nfrom base import Shared as Imported\n\nclass Model:\n    pass\n"
    text = MINIMAL + "code:\n  paths: [handler.py]\n  handler: handler:Modle\n"
    msg = load_error(tmp_path / "typo", text, {"handler.py": code})
    assert ":9: code.handler: handler.py defines no 'Modle' (did you mean 'Model'?)" in msg
    for name in ("Model", "Imported"):  # defined, or imported at the top: found by reading, never running
        make_project(tmp_path / name, MINIMAL + f"code:\n  paths: [handler.py]\n  handler: handler:{name}\n",
                     {"handler.py": code})  # fmt: skip
        assert load_packfile(tmp_path / name).code.class_name == name
    fixed = text.replace("Modle", "Model")
    broken = load_error(tmp_path / "broken", fixed, {"handler.py": "class Model(:\n"})
    assert "code.handler: handler.py line 1 does not parse as Python" in broken


def test_non_onnx_model_needs_a_handler(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL.replace("format: onnx", "format: safetensors"))
    assert "code: is required for model.format safetensors" in msg
    text = MINIMAL.replace("format: onnx", "format: gguf") + "code:\n  handler: onnx\n"
    assert "code.handler: the onnx handler cannot serve model.format gguf" in load_error(tmp_path, text)


def test_name_must_be_an_oci_repository_component(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL.replace("name: demo", "name: My Model"))
    assert ":1: name: 'My Model' is not a valid OCI repository name" in msg and "'my-model'" in msg


def test_serving_checks(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL + "serving:\n  port: 70000\n")
    assert ":8: serving.port: 70000 is out of range (between 1 and 65535)" in msg
    msg = load_error(tmp_path, MINIMAL + "serving:\n  system_packages: [libgomp1]\n")
    assert "serving.system_packages: needs a Docker build (set serving.builder: docker)" in msg
    msg = load_error(tmp_path, MINIMAL + "serving:\n  env: {PORT: 1}\n")
    assert "serving.env.PORT: is set from serving.port" in msg
    msg = load_error(tmp_path, MINIMAL + "serving:\n  builder: kaniko\n")
    assert "serving.builder: 'kaniko' is not one of daemonless, docker" in msg


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL + "name: again\n")
    assert ":7: name: given twice (first on line 1)" in msg


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL + "tests: [unclosed\n")
    assert re.search(r"modelpack\.yaml:\d+: not valid YAML", msg)


def test_missing_packfile_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such file .*modelpack init"):
        load_packfile(tmp_path)


def test_invalid_cases_file_is_refused_at_load(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL + "tests:\n  cases: cases.json\n", {"cases.json": '{"cases": []}'})
    assert "cases.json: 'cases' must be a non-empty list" in msg


def test_version_must_be_a_tag(tmp_path: Path) -> None:
    msg = load_error(tmp_path, MINIMAL + "version: 1.0.0+build\n")
    assert ":7: version: '1.0.0+build' cannot be an OCI tag" in msg
