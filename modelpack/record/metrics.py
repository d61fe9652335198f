"""Metrics and params: read from the JSON/YAML files training writes, or given inline, flattened with dots.

A metric is a finite number (`bool` is not: YAML `yes` and JSON `true` are refused, since a flag compared
by a gate is a bug waiting to happen). Params are scalars (string, number, bool, null); a list of scalars is
kept as its compact JSON text so two versions can still be diffed key by key. Nested mappings flatten with
dots: `{"eval": {"f1": 0.9}}` -> `eval.f1`. Every refusal names the file, the line when the file is YAML,
and the dotted key.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from modelpack.errors import InputError
from modelpack.record.files import read_bounded
from modelpack.record.record import Metric, ParamValue

_JSON_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_YAML_SUFFIXES = (".yaml", ".yml")
_MAX_FILE = 16 << 20  # metrics and params files are small; a huge one is a wrong path
_LINES_FOR_JSON_UP_TO = 1 << 20


class _Located:
    """A value read from a file, with the 1-based line it came from when the format tells us."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int | None) -> None:
        self.value = value
        self.line = line


def read_values_file(path: Path, *, display: str | None = None) -> Any:
    """Parse a JSON or YAML mapping file into nested dict/list/scalar values wrapped in `_Located`."""
    where = display or str(path)
    data = read_bounded(path, where=where, limit=_MAX_FILE, what="a JSON or YAML metrics or params file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text") from None
    if path.suffix.lower() in _YAML_SUFFIXES:
        return _from_yaml(text, where)
    return _from_json(text, where)


def _from_json(text: str, where: str) -> Any:
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        line = getattr(e, "lineno", None)
        raise InputError(f"{where}:{line or 1}: not valid JSON: {getattr(e, 'msg', e)}") from None
    return _with_lines(text, data, where) or _wrap(data)


def _with_lines(text: str, data: Any, where: str) -> _Located | None:
    """JSON is (nearly) YAML: read it again as YAML nodes to learn each value's line, and use that view
    only when it holds exactly the values json read (else the caller falls back to json's, lineless)."""
    if len(text) > _LINES_FOR_JSON_UP_TO:
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        view = located(node, where) if node is not None else None
    except (yaml.YAMLError, InputError, RecursionError):
        return None
    return view if view is not None and _unwrap(view) == data else None


def _unwrap(value: _Located) -> Any:
    if isinstance(value.value, dict):
        return {k: _unwrap(v) for k, v in value.value.items()}
    if isinstance(value.value, list):
        return [_unwrap(v) for v in value.value]
    return value.value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _wrap(data: Any) -> Any:
    if isinstance(data, dict):
        return _Located({str(k): _wrap(v) for k, v in data.items()}, None)
    if isinstance(data, list):
        return _Located([_wrap(v) for v in data], None)
    return _Located(data, None)


def _from_yaml(text: str, where: str) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise InputError(f"{where}:{line}: not valid YAML: {e.problem or e.context}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise InputError(f"{where}: not valid YAML: {yaml_problem(e)}") from None
    if node is None:
        return _Located({}, 1)
    return located(node, where)


def located(node: yaml.Node, where: str, depth: int = 0) -> _Located:
    """A composed YAML node as nested values that remember their line, for flatten_metrics/params."""
    line = node.start_mark.line + 1
    if depth > 32:
        raise InputError(f"{where}:{line}: nested deeper than 32 levels")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, _Located] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise InputError(f"{where}:{k.start_mark.line + 1}: keys must be plain strings")
            out[str(k.value)] = located(v, where, depth + 1)
        return _Located(out, line)
    if isinstance(node, yaml.SequenceNode):
        return _Located([located(v, where, depth + 1) for v in node.value], line)
    return _Located(yaml_scalar(node, where), line)


def yaml_scalar(node: yaml.Node, where: str) -> Any:
    """The Python value of a YAML scalar; JSON-style exponents (`1e-5`), which YAML 1.1 reads as strings,
    are numbers here because that is what every training script means by them."""
    assert isinstance(node, yaml.ScalarNode)
    if node.style is None and node.tag == "tag:yaml.org,2002:str" and _JSON_NUMBER.match(node.value):
        return float(node.value)
    try:
        return SafeConstructor().construct_object(node, deep=True)
    except (ConstructorError, ValueError, OverflowError) as e:
        raise InputError(
            f"{where}:{node.start_mark.line + 1}: cannot read value {node.value!r}: {_problem(e)}"
        ) from None


def flatten_metrics(data: Any, *, where: str, dataset: str | None = None) -> dict[str, Metric]:
    """Flatten a (wrapped or plain) mapping of numbers into `{dotted.name: Metric(value, dataset)}`."""
    out: dict[str, Metric] = {}
    for key, leaf in _flatten(_ensure_wrapped(data), where, prefix=""):
        value = leaf.value
        if not is_number(value):
            raise InputError(
                f"{_at(where, leaf.line)}: metric {key!r}: {_show(value)} is not a number",
                hint="metrics must be numbers such as 0.97; put text in params instead",
            )
        out[key] = Metric(float(value), dataset)
    return out


def flatten_params(data: Any, *, where: str) -> dict[str, ParamValue]:
    """Flatten a (wrapped or plain) mapping of scalars into `{dotted.name: scalar}`."""
    out: dict[str, ParamValue] = {}
    for key, leaf in _flatten(_ensure_wrapped(data), where, prefix="", lists_are_values=True):
        value = leaf.value
        if isinstance(value, list):
            items = [item.value for item in value]
            if not all(_is_scalar(i) and not isinstance(i, list) for i in items):
                raise InputError(f"{_at(where, leaf.line)}: param {key!r}: a list may hold only scalars")
            out[key] = json.dumps(items, separators=(",", ":"), default=str)
        elif isinstance(value, datetime.date):  # YAML reads `2024-05-01` as a date; keep the text
            out[key] = value.isoformat()
        elif _is_scalar(value):
            out[key] = _finite_or_text(value)
        else:
            raise InputError(f"{_at(where, leaf.line)}: param {key!r}: {_show(value)} is not a scalar")
    return out


def load_metrics_file(
    path: Path, *, dataset: str | None = None, display: str | None = None
) -> dict[str, Metric]:
    where = display or str(path)
    return flatten_metrics(read_values_file(path, display=where), where=where, dataset=dataset)


def load_params_file(path: Path, *, display: str | None = None) -> dict[str, ParamValue]:
    where = display or str(path)
    return flatten_params(read_values_file(path, display=where), where=where)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _finite_or_text(value: ParamValue) -> ParamValue:
    # NaN and infinity have no canonical JSON form; keep them as the text a reader expects.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _ensure_wrapped(data: Any) -> _Located:
    return data if isinstance(data, _Located) else _wrap(data)


def _flatten(
    node: _Located, where: str, prefix: str, lists_are_values: bool = False
) -> list[tuple[str, _Located]]:
    if not isinstance(node.value, Mapping):
        what = "a mapping of names to values"
        raise InputError(f"{_at(where, node.line)}: {_key(prefix)}: expected {what}, got {_show(node.value)}")
    out: list[tuple[str, _Located]] = []
    for name, child in node.value.items():
        key = f"{prefix}.{name}" if prefix else name
        if not name:
            raise InputError(f"{_at(where, child.line)}: {_key(prefix)}: empty key")
        if isinstance(child.value, Mapping):
            out.extend(_flatten(child, where, key, lists_are_values))
        elif isinstance(child.value, list) and not lists_are_values:
            raise InputError(f"{_at(where, child.line)}: metric {key!r}: a list is not a number")
        else:
            out.append((key, child))
    return out


def _at(where: str, line: int | None) -> str:
    return f"{where}:{line}" if line else where


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value.value if isinstance(value, _Located) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(prefix: str) -> str:
    return repr(prefix) if prefix else "top level"


def _problem(error: Exception) -> str:
    problem = getattr(error, "problem", None)
    return str(problem) if problem else type(error).__name__


def yaml_problem(error: BaseException) -> str:
    """PyYAML's reason in one line (its str() spans lines, with a caret under the column)."""
    if isinstance(error, yaml.reader.ReaderError):
        return f"character {chr(error.character)!r} at position {error.position} is not allowed"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
