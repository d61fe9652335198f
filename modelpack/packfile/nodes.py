"""Reading YAML nodes (not constructed Python values) so every error can name the file, line and key.

PyYAML's `compose` keeps each node's position; these helpers turn a node into the value a field wants
or raise an InputError shaped `modelpack.yaml:12: model.format: <what is wrong> (<what would be valid>)`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

import yaml

from modelpack.errors import InputError
from modelpack.record.located import yaml_scalar
from modelpack.record.metrics import is_number

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NUMBER_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

# Names people reach for that are spelled differently here; difflib cannot guess these.
SYNONYMS = {
    "files": "paths",
    "file": "paths",
    "path": "paths",
    "lock": "lockfile",
    "requirements": "lockfile",
    "python_version": "python",
    "image": "base_image",
    "base": "base_image",
    "environment": "env",
    "packages": "system_packages",
    "author": "authors",
    "url": "uri",
    "requests": "latency_requests",
    "thresholds": "gates",
    "entrypoint": "handler",
    "class": "handler",
}


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    options = list(options)
    if word in SYNONYMS and SYNONYMS[word] in options:
        return f"did you mean {SYNONYMS[word]!r}?"
    close = difflib.get_close_matches(word.lower(), options, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


class Doc:
    """The file being read: its display name, used as the prefix of every error."""

    def __init__(self, display: str) -> None:
        self.display = display

    def error(self, node: yaml.Node | None, key: str, message: str, hint: str | None = None) -> InputError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f" {_oneline(key)}:" if key else ""
        return InputError(f"{self.display}{line}:{where} {_oneline(message)}", hint=hint and _oneline(hint))

    # --- structure ------------------------------------------------------------------------------------

    def mapping(
        self,
        node: yaml.Node,
        key: str,
        allowed: Sequence[str],
        required: Sequence[str] = (),
    ) -> dict[str, yaml.Node]:
        """The mapping at `node` as {key: value node}; unknown, duplicate and missing keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(
                node, key, f"expected a mapping with keys {', '.join(allowed)}, got {_kind(node)}"
            )
        out: dict[str, yaml.Node] = {}
        key_nodes: dict[str, yaml.Node] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.tag not in (_STR, _INT, _FLOAT, _BOOL, _NULL):
                raise self.error(k, key, "keys must be plain names")
            name = str(k.value)
            sub = f"{key}.{name}" if key else name
            if name not in allowed:
                options = ", ".join(allowed)
                hint = did_you_mean(name, allowed) or f"valid keys here: {options}"
                raise self.error(k, sub, "unknown key", hint=hint)
            if name in out:
                first = key_nodes[name].start_mark.line + 1
                raise self.error(k, sub, f"given twice (first on line {first})")
            out[name] = v
            key_nodes[name] = k
        for name in required:
            if name not in out or is_null(out[name]):
                sub = f"{key}.{name}" if key else name
                raise self.error(node, sub, "is required", hint=_REQUIRED_HINTS.get(sub))
        return out

    def sequence(self, node: yaml.Node, key: str, *, scalar_ok: bool = True) -> list[yaml.Node]:
        """A list; one scalar stands for a list of one when `scalar_ok`; null is an empty list."""
        if is_null(node):
            return []
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if scalar_ok and isinstance(node, yaml.ScalarNode):
            return [node]
        raise self.error(node, key, f"expected a list, got {_kind(node)}")

    # --- scalars --------------------------------------------------------------------------------------

    def string(self, node: yaml.Node, key: str, *, allow_empty: bool = False) -> str:
        """The scalar's text as written: `python: 3.10` is "3.10", not the float 3.1."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            raise self.error(node, key, f"expected a string, got {_kind(node)}")
        text = str(node.value)
        if not text.strip() and not allow_empty:
            raise self.error(node, key, "must not be empty")
        return text if allow_empty else text.strip()

    def optional_string(self, node: yaml.Node | None, key: str) -> str | None:
        return None if node is None or is_null(node) else self.string(node, key)

    def strings(self, node: yaml.Node | None, key: str) -> list[tuple[str, yaml.Node]]:
        if node is None:
            return []
        items = self.sequence(node, key)
        return [(self.string(item, f"{key}[{i}]"), item) for i, item in enumerate(items)]

    def boolean(self, node: yaml.Node, key: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return bool(yaml_scalar(node, self.display))
        raise self.error(node, key, f"expected true or false, got {_kind(node)}")

    def integer(self, node: yaml.Node, key: str, low: int, high: int) -> int:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT:
            raise self.error(node, key, f"expected a whole number, got {_kind(node)}")
        value = yaml_scalar(node, self.display)
        if not isinstance(value, int) or not low <= value <= high:
            raise self.error(node, key, f"{node.value} is out of range", hint=f"between {low} and {high}")
        return value

    def number(self, node: yaml.Node, key: str) -> float:
        """A finite number; `1e-5` counts although YAML 1.1 reads it as text."""
        value: object = None
        if isinstance(node, yaml.ScalarNode) and node.style is None:
            if node.tag in (_INT, _FLOAT):
                value = yaml_scalar(node, self.display)
            elif node.tag == _STR and _NUMBER_TEXT.match(node.value):
                value = float(node.value)
        if is_number(value):
            return float(value)  # type: ignore[arg-type]
        raise self.error(node, key, f"expected a number, got {_kind(node)}")

    def choice(self, node: yaml.Node, key: str, choices: Sequence[str]) -> str:
        value = self.string(node, key)
        if value not in choices:
            hint = did_you_mean(value, choices)
            raise self.error(node, key, f"{value!r} is not one of {', '.join(choices)}", hint=hint)
        return value


_REQUIRED_HINTS = {
    "name": "a lowercase name such as 'iris-classifier'",
    "model": "add model: {paths: [model.onnx], format: onnx}",
    "model.paths": "the model's files or directories, relative to modelpack.yaml",
    "model.format": "one of onnx, safetensors, pytorch, gguf, sklearn-pickle, other",
    "dependencies": "add dependencies: {lockfile: requirements.lock, python: '3.11'}",
    "dependencies.lockfile": "a pinned lockfile such as requirements.lock, uv.lock or poetry.lock",
}


def _oneline(text: str) -> str:
    # Values echoed back may hold newlines or control characters; an error stays one line.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _NULL:
            return "nothing (null)"
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return repr(text)
    return "an unknown node"
