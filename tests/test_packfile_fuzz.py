"""Whatever bytes sit in modelpack.yaml, loading gives an InputError or a Packfile, never a crash."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.packfiles import MINIMAL, make_project

from modelpack.errors import InputError
from modelpack.packfile import load_packfile
from modelpack.packfile.loader import TOP_KEYS

SECTION_KEYS = [
    "paths", "format", "framework", "handler", "lockfile", "python", "name", "path", "uri", "package",
    "file", "dataset", "values", "value", "cases", "gates", "latency_requests", "base_image", "port",
    "env", "system_packages", "builder", "model.onnx", "requirements.lock", "metrics.json", "params.yaml",
    "cases.json", "data/train.csv", "handler.py", "onnx", "handler:Model", "accuracy >= 0.9", "..",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SECTION_KEYS),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from([*SECTION_KEYS, *TOP_KEYS]), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)
documents = st.dictionaries(st.sampled_from(TOP_KEYS), values, max_size=len(TOP_KEYS))


def _check(root: Path, text: str | bytes) -> None:
    path = root / "modelpack.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        packfile = load_packfile(path)
    except InputError as e:
        assert e.exit_code == 2
        assert str(e).startswith(str(path)) or str(e).startswith(str(root))
        assert "\n" not in str(e)
    else:
        assert packfile.name and packfile.model.files


def _project() -> Path:
    # One project for every example (hypothesis runs each example many times; a tmp_path per example
    # would be per test instead). Its files are the ones MINIMAL names, so mutations can load.
    root = Path(tempfile.mkdtemp(prefix="packfile-fuzz-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    make_project(root, MINIMAL)
    return root


_ROOT = _project()
_settings = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(st.text(max_size=400))
def test_arbitrary_text_is_input_error_or_packfile(text: str) -> None:
    _check(_ROOT, text.encode("utf-8", errors="replace"))


@_settings
@given(st.binary(max_size=300))
def test_arbitrary_bytes_is_input_error_or_packfile(data: bytes) -> None:
    _check(_ROOT, data)


@pytest.mark.slow
@_settings
@given(documents)
def test_structured_yaml_is_input_error_or_packfile(doc: dict[str, Any]) -> None:
    _check(_ROOT, yaml.safe_dump(doc, allow_unicode=True))


@pytest.mark.slow
@_settings
@given(st.sampled_from(MINIMAL.splitlines()), values)
def test_one_field_replaced_is_input_error_or_packfile(line: str, value: Any) -> None:
    key = line.split(":", 1)[0]
    dumped = yaml.safe_dump({key.strip(): value}, default_flow_style=True).strip()[1:-1]
    indent = line[: len(line) - len(line.lstrip())]
    _check(_ROOT, MINIMAL.replace(line, indent + dumped))


@pytest.mark.slow
@_settings
@given(
    st.sampled_from(["metrics.json", "metrics.yaml"]),
    st.one_of(st.text(max_size=200), documents.map(yaml.safe_dump)),
)
def test_arbitrary_metrics_files_are_input_error_or_metrics(name: str, text: str) -> None:
    (_ROOT / name).write_text(text, encoding="utf-8", errors="replace")
    _check(_ROOT, MINIMAL + f"metrics: {name}\nparams: {name}\n")
