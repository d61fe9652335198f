"""The jinja2 templates modelpack renders (project scaffold, workflows, Dockerfile), found wherever it runs.

An installed wheel carries them at `modelpack/_templates` (pyproject's hatch force-include of the
repository's `templates/`); a source checkout or an editable install reads the repository's `templates/`
next to the package. Rendering is strict: a name a template uses but the caller did not pass is an
error, never an empty string in a generated file.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from modelpack.errors import ModelpackError

_PACKAGE = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """The directory holding the templates: the wheel's copy first, else the source checkout's."""
    for candidate in (_PACKAGE / "_templates", _PACKAGE.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise ModelpackError(
        f"modelpack's templates are missing (looked in {_PACKAGE / '_templates'} and "
        f"{_PACKAGE.parent / 'templates'})",
        hint="reinstall modelpack",
    )


def github_expression(expr: str) -> str:
    """`${{ expr }}` for GitHub workflow templates, whose own braces would clash with jinja's."""
    return "${{ " + expr + " }}"


def _json(value: Any) -> str:
    # Keys in the caller's order (readable cases files), unlike jinja's sorting, HTML-escaping `tojson`.
    return json.dumps(value, ensure_ascii=False)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, Python, JSON and Dockerfiles, never HTML
    )
    env.globals["gh"] = github_expression
    env.filters["json"] = _json
    return env


def render(template: str, /, **context: Any) -> str:
    """Render `template` (a path under the templates directory, e.g. "modelpack.yaml.j2")."""
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateNotFound:
        raise ModelpackError(
            f"modelpack's template {template} is missing from {templates_dir()}", hint="reinstall modelpack"
        ) from None
    except jinja2.UndefinedError as e:
        # A programming error, not a user's: say which template so it is found fast.
        raise ModelpackError(f"template {template}: {e.message}") from e
