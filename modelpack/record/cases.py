"""Golden cases: V2 inference requests and the outputs a release must answer with.

The cases file (JSON, named by `tests.cases` in modelpack.yaml) looks like this:

    {
      "tolerance": {"abs": 1e-6, "rel": 1e-5},          # optional default for every case
      "cases": [
        {
          "name": "setosa",                              # unique, non-empty
          "inputs": [                                    # V2 (KServe Open Inference Protocol) tensors
            {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
          ],
          "outputs": [                                   # expected; outputs not listed are not checked
            {"name": "label", "shape": [1], "datatype": "INT64", "data": [0]},
            {"name": "probabilities", "shape": [1, 3], "datatype": "FP32", "data": [0.97, 0.03, 0.0]}
          ],
          "tolerance": {"abs": 1e-4}                     # optional, overrides the default per field
        }
      ]
    }

`data` may be flat (row-major) or nested to the shape; it is stored flat. Floating-point outputs
(FP16/FP32/FP64) match when `|actual - expected| <= abs + rel * |expected|` (numpy's `isclose`); every
other datatype (BOOL, INT*, UINT*, BYTES) must match exactly, as must names, shapes and datatypes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import InputError

FLOAT_TYPES = ("FP16", "FP32", "FP64")
_INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
DATATYPES = ("BOOL", *_INT_RANGES, *FLOAT_TYPES, "BYTES")
Scalar = bool | int | float | str
# Read whole into memory and parsed as one document; golden cases are small requests.
MAX_CASES_FILE = 64 << 20


@dataclass(frozen=True)
class Tolerance:
    abs: float = 1e-6
    rel: float = 1e-5

    def close(self, actual: float, expected: float) -> bool:
        if math.isnan(expected):
            return math.isnan(actual)
        return abs(actual - expected) <= self.abs + self.rel * abs(expected)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: tuple[Scalar, ...]  # flat, row-major

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "datatype": self.datatype,
            "data": list(self.data),
        }


@dataclass(frozen=True)
class Case:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    tolerance: Tolerance = Tolerance()

    def request(self) -> dict[str, Any]:
        """The V2 infer request body for this case."""
        return {"inputs": [t.to_json() for t in self.inputs]}

    def compare(self, response: Mapping[str, Any]) -> tuple[str, ...]:
        """What differs between a V2 infer response body and the expected outputs (empty: the case passes)."""
        raw = response.get("outputs") if isinstance(response, Mapping) else None
        if not isinstance(raw, list):
            return ("the response has no 'outputs' list",)
        got: dict[str, Tensor] = {}
        for i, item in enumerate(raw):
            try:
                t = parse_tensor(item, f"outputs[{i}]")
            except InputError as e:
                return (f"response {e.message}",)
            got[t.name] = t
        problems: list[str] = []
        for want in self.outputs:
            have = got.get(want.name)
            if have is None:
                problems.append(f"output {want.name!r} is missing (got {', '.join(sorted(got)) or 'none'})")
            else:
                problems.extend(_compare_tensor(want, have, self.tolerance))
        return tuple(problems)


def _compare_tensor(want: Tensor, have: Tensor, tol: Tolerance) -> list[str]:
    name = want.name
    if have.datatype != want.datatype:
        return [f"output {name!r}: datatype {have.datatype}, expected {want.datatype}"]
    if have.shape != want.shape:
        return [f"output {name!r}: shape {list(have.shape)}, expected {list(want.shape)}"]
    floats = want.datatype in FLOAT_TYPES
    for i, (a, e) in enumerate(zip(have.data, want.data, strict=True)):
        ok = tol.close(float(a), float(e)) if floats else a == e and type(a) is type(e)
        if not ok:
            extra = f" (tolerance abs {tol.abs:g}, rel {tol.rel:g})" if floats else ""
            return [f"output {name!r}[{i}]: {a!r}, expected {e!r}{extra}"]
    return []


def load_cases(path: Path, *, display: str | None = None) -> tuple[Case, ...]:
    where = display or str(path)
    try:
        if path.stat().st_size > MAX_CASES_FILE:
            raise InputError(
                f"{where}: larger than {MAX_CASES_FILE >> 20} MiB",
                hint="golden cases are a few requests; keep large inputs out of them",
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise InputError(f"{where}: not valid JSON: nested too deeply") from None
    except ValueError as e:
        raise InputError(
            f"{where}:{getattr(e, 'lineno', 1)}: not valid JSON: {getattr(e, 'msg', e)}"
        ) from None
    return parse_cases(obj, where)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json lets the last of two equal keys win; in a golden case that silently drops an expectation.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice in one object")
        out[key] = value
    return out


def parse_cases(obj: Any, where: str) -> tuple[Case, ...]:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an object with a 'cases' list")
    _only(obj, ("cases", "tolerance"), where, "top level")
    default = _tolerance(obj.get("tolerance"), Tolerance(), where, "tolerance")
    raw = obj.get("cases")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where}: 'cases' must be a non-empty list")
    cases: list[Case] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"cases[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{where}: {at}: expected an object with name, inputs and outputs")
        _only(item, ("name", "inputs", "outputs", "tolerance"), where, at)
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}: {at}.name: must be a non-empty string")
        if name in seen:
            raise InputError(f"{where}: {at}.name: {name!r} is used by two cases")
        seen.add(name)
        inputs = _tensors(item.get("inputs"), where, f"{at}.inputs")
        outputs = _tensors(item.get("outputs"), where, f"{at}.outputs")
        tolerance = _tolerance(item.get("tolerance"), default, where, f"{at}.tolerance")
        cases.append(Case(name, inputs, outputs, tolerance))
    return tuple(cases)


def _tensors(raw: Any, where: str, at: str) -> tuple[Tensor, ...]:
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where}: {at}: must be a non-empty list of V2 tensors")
    tensors: list[Tensor] = []
    for i, item in enumerate(raw):
        try:
            tensors.append(parse_tensor(item, f"{at}[{i}]"))
        except InputError as e:
            raise InputError(f"{where}: {e.message}", hint=e.hint) from None
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: {at}: two tensors share a name")
    return tuple(tensors)


def parse_tensor(raw: Any, at: str) -> Tensor:
    """One V2 tensor `{name, shape, datatype, data}`; the error names `at` and the field."""
    if not isinstance(raw, dict):
        raise InputError(f"{at}: expected an object with name, shape, datatype and data")
    name, shape, datatype, data = (raw.get(k) for k in ("name", "shape", "datatype", "data"))
    if not isinstance(name, str) or not name:
        raise InputError(f"{at}.name: must be a non-empty string")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InputError(f"{at}.shape: must be a list of non-negative integers")
    if datatype not in DATATYPES:
        raise InputError(f"{at}.datatype: {datatype!r} is not a V2 datatype", hint=", ".join(DATATYPES))
    flat = _flatten(data, at)
    count = math.prod(shape)
    if len(flat) != count:
        raise InputError(f"{at}.data: {len(flat)} elements, shape {shape} needs {count}")
    for value in flat:
        _check_element(value, datatype, at)
    return Tensor(name, tuple(shape), datatype, tuple(flat))


def _flatten(data: Any, at: str, depth: int = 0) -> list[Scalar]:
    if not isinstance(data, list):
        raise InputError(f"{at}.data: must be a list")
    if depth > 32:
        raise InputError(f"{at}.data: nested deeper than 32 levels")
    out: list[Scalar] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item, at, depth + 1))
        else:
            out.append(item)
    return out


def _check_element(value: Any, datatype: str, at: str) -> None:
    if datatype == "BOOL":
        ok = isinstance(value, bool)
    elif datatype == "BYTES":
        ok = isinstance(value, str)
    elif datatype in FLOAT_TYPES:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        low, high = _INT_RANGES[datatype]
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        raise InputError(f"{at}.data: {value!r} is not a valid {datatype} element")


def _tolerance(raw: Any, default: Tolerance, where: str, at: str) -> Tolerance:
    if raw is None:
        return default
    if not isinstance(raw, dict):
        raise InputError(f'{where}: {at}: expected an object like {{"abs": 1e-6, "rel": 1e-5}}')
    _only(raw, ("abs", "rel"), where, at)
    values = {}
    for key in ("abs", "rel"):
        v = raw.get(key, getattr(default, key))
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise InputError(f"{where}: {at}.{key}: must be a non-negative number")
        values[key] = float(v)
    return Tolerance(**values)


def _only(obj: Mapping[str, Any], allowed: Sequence[str], where: str, at: str) -> None:
    for key in obj:
        if key not in allowed:
            raise InputError(f"{where}: {at}: unknown key {key!r}", hint=f"valid keys: {', '.join(allowed)}")
