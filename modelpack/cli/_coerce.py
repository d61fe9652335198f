"""Plain command-line values converted without pydantic (typer >= 0.29 builds a pydantic TypeAdapter per
parameter, and importing pydantic for that is most of a short command's start: measured in
bench/README.md, "CLI start").

Only the values whose conversion cannot differ from typer's own are converted here: a str for a `str`,
a list of str for `list[str]`, digits for an `int` within its bounds, a decimal for a `float`, a non-empty
string for a `Path` (then typer's own path checks). Anything else (an Enum, a parser, a value out of
bounds, a malformed number) goes to typer's own conversion, so its result and its error message are
typer's. tests/test_cli_start.py compares both on a table of inputs. On a typer without this machinery
(0.28 and older, which need no pydantic) nothing is installed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.core

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNCONVERTED = object()


def _bounded(n: float, info: Any) -> bool:
    return (info.min is None or n >= info.min) and (info.max is None or n <= info.max)


def convert(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
    """`value` converted as typer would, or `_UNCONVERTED` when only typer's own conversion can say."""
    if info.parser is not None:
        return _UNCONVERTED
    kind = type(value)
    if annotation is str and kind is str:
        return value
    if annotation == list[str] and isinstance(value, list | tuple) and all(type(v) is str for v in value):
        return list(value)
    if annotation is bool and kind is bool:
        return value
    if annotation is int and (kind is int or (kind is str and _INT.fullmatch(value))):
        n = int(value)
        return n if _bounded(n, info) else _UNCONVERTED
    if annotation is float and (kind in (int, float) or (kind is str and _FLOAT.fullmatch(value))):
        x = float(value)
        return x if _bounded(x, info) else _UNCONVERTED
    if annotation is Path and info.path_type in (None, Path):
        from typer._param_types import coerce_cli_path

        if isinstance(value, Path):  # a default: typer's own checks take it as it is
            return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
        if kind is str and value and "\0" not in value:
            return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    return _UNCONVERTED


def install() -> None:
    core: Any = typer.core  # typer's private machinery: typed loosely, guarded by tests/test_cli_start.py
    if not callable(getattr(core, "build_runtime_param", None)) or getattr(
        core.build_runtime_param, "modelpack_plain", False
    ):
        return
    from typer._coercion import RuntimeParam, TypeDescriptor

    build: Callable[[TypeDescriptor], RuntimeParam] = core.build_runtime_param

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):
        descriptor: TypeDescriptor

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            out = convert(self.annotation, self.parameter_info, value, param, ctx)
            if out is _UNCONVERTED:  # typer's own, pydantic and all, for its result or its error message
                return build(self.descriptor)._coerce_value(value, param=param, ctx=ctx)
            return out

    def plain(descriptor: TypeDescriptor) -> RuntimeParam:
        if descriptor.file_annotation is not None:
            return build(descriptor)  # opening files: typer's own, it needs no pydantic
        return PlainRuntimeParam(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation, descriptor=descriptor
        )

    plain.modelpack_plain = True  # type: ignore[attr-defined]
    core.build_runtime_param = plain
