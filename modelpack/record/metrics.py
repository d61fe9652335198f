"""Metrics and params: read from the JSON/YAML files training writes, or given inline, flattened with dots.

A metric is a finite number (`bool` is not: YAML `yes` and JSON `true` are refused, since a flag compared
by a gate is a bug waiting to happen). Params are scalars (string, number, bool, null); a list of scalars is
kept as its compact JSON text so two versions can still be diffed key by key. Nested mappings flatten with
dots: `{"eval": {"f1": 0.9}}` -> `eval.f1`. Every refusal names the file, the line when the file is YAML,
and the dotted key.

Nothing is last-wins: a key given twice in one mapping, or two spellings of one dotted name
(`{"eval.f1": 1, "eval": {"f1": 2}}`), is refused naming both. The files are read by record/located.py
(bounded, every value with its line).
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelpack.errors import InputError
from modelpack.record.located import TWICE_HINT, Located, read_values_file, wrap
from modelpack.record.record import Metric, ParamValue


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


def _ensure_wrapped(data: Any) -> Located:
    return data if isinstance(data, Located) else wrap(data)


def _flatten(
    node: Located, where: str, prefix: str, lists_are_values: bool = False
) -> list[tuple[str, Located]]:
    """The leaves under `node` as (dotted name, leaf); two spellings of one dotted name are refused."""
    kind = "param" if lists_are_values else "metric"
    out: list[tuple[str, Located]] = []
    spelled: dict[str, tuple[tuple[str, ...], Located]] = {}
    for key, names, leaf in _leaves(node, where, prefix, (), lists_are_values):
        if key in spelled:
            first, first_leaf = spelled[key]
            raise InputError(
                f"{_at(where, leaf.line)}: {kind} {key!r} is given twice: as {_spelling(first)}"
                f"{_on_line(first_leaf)} and as {_spelling(names)}{_on_line(leaf)}",
                hint=TWICE_HINT,
            )
        spelled[key] = (names, leaf)
        out.append((key, leaf))
    return out


def _leaves(
    node: Located, where: str, prefix: str, names: tuple[str, ...], lists_are_values: bool
) -> list[tuple[str, tuple[str, ...], Located]]:
    if not isinstance(node.value, Mapping):
        what = "a mapping of names to values"
        raise InputError(f"{_at(where, node.line)}: {_key(prefix)}: expected {what}, got {_show(node.value)}")
    out: list[tuple[str, tuple[str, ...], Located]] = []
    for name, child in node.value.items():
        key = f"{prefix}.{name}" if prefix else name
        if not name:
            raise InputError(f"{_at(where, child.line)}: {_key(prefix)}: empty key")
        if isinstance(child.value, Mapping):
            out.extend(_leaves(child, where, key, (*names, name), lists_are_values))
        elif isinstance(child.value, list) and not lists_are_values:
            raise InputError(f"{_at(where, child.line)}: metric {key!r}: a list is not a number")
        else:
            out.append((key, (*names, name), child))
    return out


def _spelling(names: tuple[str, ...]) -> str:
    return " > ".join(repr(n) for n in names)


def _on_line(leaf: Located) -> str:
    return f" (line {leaf.line})" if leaf.line else ""


def _at(where: str, line: int | None) -> str:
    return f"{where}:{line}" if line else where


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value.value if isinstance(value, Located) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(prefix: str) -> str:
    return repr(prefix) if prefix else "top level"

