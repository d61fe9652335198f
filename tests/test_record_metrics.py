"""Metrics and params files: numbers only (bool is not one), nested keys joined with dots, errors by key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from modelpack.errors import InputError
from modelpack.record.metrics import flatten_metrics, flatten_params, load_metrics_file, load_params_file
from modelpack.record.record import Metric


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_json_metrics_flatten_with_dots(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics.json", '{"accuracy": 0.97, "eval": {"f1": 0.9, "n": 30}, "loss": 1e-05}')
    assert load_metrics_file(path, dataset="test") == {
        "accuracy": Metric(0.97, "test"),
        "eval.f1": Metric(0.9, "test"),
        "eval.n": Metric(30.0, "test"),
        "loss": Metric(1e-05, "test"),
    }


def test_yaml_metrics_read_exponents_as_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-5 as a string; training scripts mean a number
    path = write(tmp_path, "metrics.yaml", "loss: 1e-5\nacc: 0.5\nnested:\n  deep:\n    x: 3\n")
    assert load_metrics_file(path) == {
        "loss": Metric(1e-5),
        "acc": Metric(0.5),
        "nested.deep.x": Metric(3.0),
    }


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.json", '{"a": true}', "m.json:1: metric 'a': True is not a number"),
        ("m.json", '{\n  "a": {\n    "b": "x"\n  }\n}', "m.json:3: metric 'a.b': 'x' is not a number"),
        ("m.json", '{"a": [1, 2]}', "m.json:1: metric 'a': a list is not a number"),
        ("m.json", '{"a": 1,\n "b": "1e5"}', "m.json:2: metric 'b': '1e5' is not a number"),
        ("m.json", '{"a": 1,\t"b": "x"}', "m.json: metric 'b': 'x' is not a number"),
        ("m.json", '{"a": null}', "metric 'a': None is not a number"),
        ("m.json", '{"a": NaN}', "m.json:1: not valid JSON"),
        ("m.json", "[1, 2]", "m.json:1: top level: expected a mapping of names to values, got a list"),
        ("m.json", '{"a": 1,\n "b": }', "m.json:2: not valid JSON"),
        ("m.yaml", "a: 1\nb: yes\n", "m.yaml:2: metric 'b': True is not a number"),
        ("m.yaml", "a: 1\nb: .nan\n", "m.yaml:2: metric 'b': nan is not a number"),
        ("m.yaml", "a: [1\n", "m.yaml:2: not valid YAML"),
        ("m.yaml", "a:\n  b:\n    c: fast\n", "m.yaml:3: metric 'a.b.c': 'fast' is not a number"),
    ],
)
def test_metrics_that_are_not_numbers(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        load_metrics_file(write(tmp_path, name, text))
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_missing_metrics_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_metrics_file(tmp_path / "nope.json")


def test_params_keep_scalars_and_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "params.yaml",
        "lr: 0.001\nopt: {name: adam, betas: [0.9, 0.999]}\nlayers: [64, 32]\nnote: null\nshuffle: true\n"
        "date: 2024-05-01\nwarmup: 1e3\n",
    )
    assert load_params_file(path) == {
        "lr": 0.001,
        "opt.name": "adam",
        "opt.betas": "[0.9,0.999]",
        "layers": "[64,32]",
        "note": None,
        "shuffle": True,
        "date": "2024-05-01",
        "warmup": 1000.0,
    }


def test_params_refuse_lists_of_mappings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"params\.json:1: param 'layers': a list may hold only scalars"):
        load_params_file(write(tmp_path, "params.json", '{"layers": [{"units": 3}]}'))


def test_inline_values_flatten_too() -> None:
    assert flatten_metrics({"a": {"b": 1}}, where="inline") == {"a.b": Metric(1.0)}
    assert flatten_params({"a": {"b": "x"}, "c": math.inf}, where="inline") == {"a.b": "x", "c": "inf"}
    with pytest.raises(InputError, match="inline: metric 'a': False is not a number"):
        flatten_metrics({"a": False}, where="inline")
