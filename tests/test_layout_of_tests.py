"""No test module imports another: shared helpers live in tests/support, fixtures in conftest.py and
tests/fixtures (issue 11 item 7). Parsed, not imported, so a violation anywhere in a file counts."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(TESTS)}:{node.lineno} imports {n}"
                for n in names
                if n == "tests" or n.startswith("tests.") or any(p.startswith("test_") for p in n.split("."))
            ]
    assert offenders == []


def test_helpers_sit_in_the_support_package() -> None:
    loose = sorted(
        p.name for p in TESTS.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py"
    )
    assert loose == [], f"helpers belong in tests/support: {loose}"
