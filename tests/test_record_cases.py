"""Golden cases files: V2 tensors validated on load, and responses compared with a tolerance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelpack.errors import InputError
from modelpack.record.cases import Tolerance, load_cases, parse_cases

DOC: dict[str, Any] = {
    "tolerance": {"abs": 1e-3, "rel": 0},
    "cases": [
        {
            "name": "nested",
            "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3.5, 4]]}],
            "outputs": [
                {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]},
                {"name": "p", "shape": [2, 1], "datatype": "FP32", "data": [0.25, 0.75]},
            ],
        },
        {
            "name": "strings",
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}],
            "outputs": [{"name": "ok", "shape": [1], "datatype": "BOOL", "data": [True]}],
            "tolerance": {"rel": 0.5},
        },
    ],
}


def response(**outputs: tuple[str, list[int], list[Any]]) -> dict[str, Any]:
    return {
        "outputs": [{"name": n, "datatype": d, "shape": s, "data": v} for n, (d, s, v) in outputs.items()]
    }


def test_load_flattens_data_and_applies_tolerances(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(DOC))
    cases = load_cases(path)
    assert [c.name for c in cases] == ["nested", "strings"]
    assert cases[0].inputs[0].data == (1, 2, 3.5, 4)
    assert cases[0].tolerance == Tolerance(abs=1e-3, rel=0.0)
    assert cases[1].tolerance == Tolerance(abs=1e-3, rel=0.5)  # per-case override keeps the default abs
    assert cases[0].request() == {
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3.5, 4]}]
    }


def test_compare_passes_within_tolerance_and_names_the_first_difference() -> None:
    case = parse_cases(DOC, "cases.json")[0]
    good = response(
        label=("INT64", [2], [1, 0]), p=("FP32", [2, 1], [0.2505, 0.7495]), extra=("FP32", [1], [9])
    )
    assert case.compare(good) == ()
    off = response(label=("INT64", [2], [1, 0]), p=("FP32", [2, 1], [0.25, 0.76]))
    assert case.compare(off) == ("output 'p'[1]: 0.76, expected 0.75 (tolerance abs 0.001, rel 0)",)
    wrong_label = response(label=("INT64", [2], [1, 1]), p=("FP32", [2, 1], [0.25, 0.75]))
    assert case.compare(wrong_label) == ("output 'label'[1]: 1, expected 0",)
    assert case.compare(response(p=("FP32", [2], [0.25, 0.75]))) == (
        "output 'label' is missing (got p)",
        "output 'p': shape [2], expected [2, 1]",
    )
    assert case.compare({"error": "boom"}) == ("the response has no 'outputs' list",)
    assert case.compare(response(label=("INT32", [2], [1, 0]), p=("FP32", [2, 1], [0.25, 0.75]))) == (
        "output 'label': datatype INT32, expected INT64",
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["cases"][0]["inputs"][0].update(shape=[3, 2]),
            "cases[0].inputs[0].data: 4 elements, shape",
        ),
        (lambda d: d["cases"][0]["inputs"][0].update(datatype="FLOAT"), "'FLOAT' is not a V2 datatype"),
        (lambda d: d["cases"][0]["outputs"][0].update(data=[1, 0.5]), "0.5 is not a valid INT64 element"),
        (lambda d: d["cases"][0]["outputs"][0].update(data=[1, True]), "True is not a valid INT64 element"),
        (
            lambda d: d["cases"][0]["outputs"][0].update(datatype="UINT8", data=[1, 256]),
            "256 is not a valid UINT8",
        ),
        (lambda d: d["cases"][1].update(name="nested"), "cases[1].name: 'nested' is used by two cases"),
        (lambda d: d["cases"][1].update(expected=[]), "cases[1]: unknown key 'expected'"),
        (lambda d: d.update(tolerance={"abs": -1}), "tolerance.abs: must be a non-negative number"),
        (lambda d: d["cases"][0].update(outputs=[]), "cases[0].outputs: must be a non-empty list"),
        (lambda d: d.update(cases=[]), "'cases' must be a non-empty list"),
    ],
)
def test_invalid_cases(mutate: Any, message: str) -> None:
    doc = json.loads(json.dumps(DOC))
    mutate(doc)
    with pytest.raises(InputError) as info:
        parse_cases(doc, "cases.json")
    assert message in str(info.value) and str(info.value).startswith("cases.json")


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text('{"cases": [\n  {,}\n]}')
    with pytest.raises(InputError, match=r"cases.json:2: not valid JSON"):
        load_cases(path)
