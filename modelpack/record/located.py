"""The bounded, located reader of the small JSON and YAML files training writes (metrics, params) and of
modelpack.yaml: values with the line they came from, so every refusal names file and line.

YAML is read as JSON types only: `!!set`, `!!binary`, merge keys (`<<`) and custom tags are refused, a key
given twice in one mapping is refused naming both lines, and aliases are bounded (`compose_yaml`) so an
alias bomb is an error, not a hang. JSON is read with the same duplicate-key rule.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from modelpack.errors import InputError
from modelpack.record.files import read_bounded

_JSON_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_YAML_SUFFIXES = (".yaml", ".yml")
_MAX_FILE = 16 << 20  # metrics and params files are small; a huge one is a wrong path
_LINES_FOR_JSON_UP_TO = 1 << 20
# Aliases let a few lines stand for billions of nodes (nine levels of `&a [*a, *a, ...]`): bounded in
# number and in the nodes they add beyond those written, far above any hand-written anchor use.
MAX_ALIASES = 1000
MAX_ALIAS_NODES = 100_000
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_KEY_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))


class Located:
    """A value read from a file, with the 1-based line it came from when the format tells us."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int | None) -> None:
        self.value = value
        self.line = line


def read_values_file(path: Path, *, display: str | None = None) -> Any:
    """Parse a JSON or YAML mapping file into nested dict/list/scalar values wrapped in `Located`."""
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
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as e:
        _yaml_view(text, where)  # names both lines when the text reads as YAML too
        raise InputError(f"{where}: key {e.key!r} is given twice in one object", hint=TWICE_HINT) from None
    except RecursionError:
        raise InputError(f"{where}: not valid JSON: nested too deeply") from None
    except ValueError as e:
        line = getattr(e, "lineno", None)
        raise InputError(f"{where}:{line or 1}: not valid JSON: {getattr(e, 'msg', e)}") from None
    return _with_lines(text, data, where) or wrap(data)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _yaml_view(text: str, where: str) -> Located | None:
    """`text` read as YAML nodes (JSON nearly is YAML), or None when it does not read as YAML; an
    InputError about a key given twice comes through, since it names both lines."""
    try:
        node = compose_yaml(text, where)
        return located(node, where) if node is not None else None
    except _TwiceError:
        raise
    except (yaml.YAMLError, InputError, RecursionError):
        return None


def _with_lines(text: str, data: Any, where: str) -> Located | None:
    """Read JSON again as YAML nodes to learn each value's line, and use that view only when it holds
    exactly the values json read (else the caller falls back to json's, lineless)."""
    if len(text) > _LINES_FOR_JSON_UP_TO:
        return None
    try:
        view = _yaml_view(text, where)
    except InputError:
        return None
    return view if view is not None and _unwrap(view) == data else None


def _unwrap(value: Located) -> Any:
    if isinstance(value.value, dict):
        return {k: _unwrap(v) for k, v in value.value.items()}
    if isinstance(value.value, list):
        return [_unwrap(v) for v in value.value]
    return value.value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def wrap(data: Any) -> Any:
    if isinstance(data, dict):
        return Located({str(k): wrap(v) for k, v in data.items()}, None)
    if isinstance(data, list):
        return Located([wrap(v) for v in data], None)
    return Located(data, None)


def _from_yaml(text: str, where: str) -> Any:
    node = compose_yaml(text, where)
    if node is None:
        return Located({}, 1)
    return located(node, where)


def compose_yaml(text: str, where: str) -> yaml.Node | None:
    """YAML text as nodes, with aliases bounded (MAX_ALIASES, MAX_ALIAS_NODES); InputError naming `where`
    for invalid YAML and for an alias bomb."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader checks the characters here already
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, loader.nodes + MAX_ALIAS_NODES, where)
        return node
    except _TooManyAliases:
        raise InputError(
            f"{where}: more than {MAX_ALIASES} YAML aliases (*name)", hint=_ALIAS_HINT
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{where}{line}: not valid YAML: {e.problem or e.context}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise InputError(f"{where}: not valid YAML: {yaml_problem(e)}") from None
    finally:
        if loader is not None:
            loader.dispose()


_ALIAS_HINT = "write the values out; anchors and aliases (&name, *name) may repeat a few values only"


class _TooManyAliases(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """Counts nodes as they are composed, and stops at the alias bound before the tree grows."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooManyAliases
        else:
            self.nodes += 1
        return super().compose_node(parent, index)


def _check_expansion(root: yaml.Node, bound: int, where: str) -> None:
    """Refuse a node graph whose tree (aliases expanded) exceeds `bound` nodes, or that contains itself.

    Sizes are counted once per node (the graph is shared, not expanded), so this is linear in what
    was written."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            open_.discard(id(node))
            sizes[id(node)] = size = 1 + sum(sizes[id(c)] for c in children)
            if size > bound:
                raise InputError(
                    f"{where}:{node.start_mark.line + 1}: YAML aliases here expand to more than "
                    f"{MAX_ALIAS_NODES:,} values", hint=_ALIAS_HINT
                )  # fmt: skip
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_:
            raise InputError(f"{where}:{node.start_mark.line + 1}: a YAML alias refers to a value it is in")
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def located(node: yaml.Node, where: str, depth: int = 0) -> Located:
    """A composed YAML node as nested values that remember their line, for flatten_metrics/params.

    Only JSON types: other tags (`!!set`, `!!binary`, `!custom`) and merge keys are refused, and so is a
    key given twice (YAML itself lets the last one win)."""
    line = node.start_mark.line + 1
    if depth > 32:
        raise InputError(f"{where}:{line}: nested deeper than 32 levels")
    if isinstance(node, yaml.MappingNode):
        _check_tag(node, _TAG + "map", where)
        out: dict[str, Located] = {}
        lines: dict[str, int] = {}
        for k, v in node.value:
            at = k.start_mark.line + 1
            if isinstance(k, yaml.ScalarNode) and k.tag == _TAG + "merge":
                raise InputError(f"{where}:{at}: merge keys (<<) are not supported", hint="write keys out")
            if not isinstance(k, yaml.ScalarNode) or k.tag not in _KEY_TAGS:
                raise InputError(f"{where}:{at}: keys must be plain strings")
            name = str(k.value)
            if name in out:
                raise _TwiceError(f"{where}:{at}: key {name!r} is given twice (first on line {lines[name]})",
                                  hint=TWICE_HINT)  # fmt: skip
            out[name] = located(v, where, depth + 1)
            lines[name] = at
        return Located(out, line)
    if isinstance(node, yaml.SequenceNode):
        _check_tag(node, _TAG + "seq", where)
        return Located([located(v, where, depth + 1) for v in node.value], line)
    if node.tag not in _SCALAR_TAGS:
        _check_tag(node, "", where)
    return Located(yaml_scalar(node, where), line)


TWICE_HINT = "a later value would silently replace the first: keep one"


class _TwiceError(InputError):
    """A key given twice: kept apart so a JSON file's duplicate can be reported with both YAML lines."""


def _check_tag(node: yaml.Node, expected: str, where: str) -> None:
    if node.tag != expected:
        tag = "!!" + node.tag.removeprefix(_TAG) if node.tag.startswith(_TAG) else node.tag
        raise InputError(
            f"{where}:{node.start_mark.line + 1}: {tag} values are not supported",
            hint="use JSON types only: mappings, lists, strings, numbers, true/false and null",
        )


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


def _problem(error: Exception) -> str:
    problem = getattr(error, "problem", None)
    return str(problem) if problem else type(error).__name__


def yaml_problem(error: BaseException) -> str:
    """PyYAML's reason in one line (its str() spans lines, with a caret under the column)."""
    if isinstance(error, yaml.reader.ReaderError):
        return f"character {chr(error.character)!r} at position {error.position} is not allowed"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
