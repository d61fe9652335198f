"""Reading TOML locks with errors that name the file (tomllib says the line and column)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from modelpack.errors import InputError


def read_toml(text: str, display: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{display}: not valid TOML: {e}") from None


def as_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def as_table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def as_str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: missing or not a string")
    return value
