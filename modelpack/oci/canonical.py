"""Canonical JSON: sorted keys, no insignificant whitespace, UTF-8. Same value, same bytes, same digest.

`loads` is also the one reader of JSON that came from a registry: nesting is bounded, so a `[[[[...`
document is a ValueError (a verdict wherever it is read), never an interpreter RecursionError, and nothing
nested deep enough to exhaust a later recursive walk (a check, a render) gets past it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # real documents (manifests, SBOMs, provenance, policies, events) nest under 15


def dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing (json.JSONDecodeError, a ValueError) a document nested deeper than `max_depth`."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise _too_deep(max_depth) from None
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise _too_deep(max_depth)
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return value


def _too_deep(max_depth: int) -> json.JSONDecodeError:
    return json.JSONDecodeError(f"nested deeper than {max_depth} levels", "", 0)
