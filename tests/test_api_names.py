"""modelpack.api: one table of names (the TYPE_CHECKING block of modelpack/api/__init__.py), each resolving
to a verb or a result type, and the module docstring's example running as written."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fixtures.registry import RegistryProcess
from support.registry_helpers import client_for

import modelpack.api
from modelpack.api._read import list_store
from modelpack.registry.client import RegistryRepository

ROOT = Path(__file__).resolve().parents[1]


def test_every_name_of_the_table_resolves_and_nothing_else_does() -> None:
    names = modelpack.api.__all__
    assert len(names) == len(set(names)) and len(names) > 50
    for name in names:
        value = getattr(modelpack.api, name)
        assert callable(value), name
        assert value.__name__ == name or name in ("list", "PullResult"), name
    assert modelpack.api.list is list_store  # the verb `list`, defined as list_store (list is a builtin)
    assert modelpack.api.PullResult is modelpack.api.TransferResult  # one shape for push, pull and copy
    assert set(names) <= set(dir(modelpack.api))
    for missing in ("base_sources", "check_overwrite", "run_test"):
        try:
            getattr(modelpack.api, missing)
        except AttributeError as e:
            assert repr(missing) in str(e)
        else:
            raise AssertionError(f"modelpack.api.{missing} should not resolve")


def test_the_docstring_example_runs(tmp_path: Path, registry: RegistryProcess, repo: str) -> None:
    doc = modelpack.api.__doc__ or ""
    example = textwrap.dedent(doc.split("a script does the same:\n\n", 1)[1].split("\nNames follow", 1)[0])
    assert "api.build(targets, " in example and "api.push(targets, " in example
    script = example.replace("127.0.0.1:5000/acme/iris", f"{registry.host}/{repo}")
    env = {**os.environ, "MODELPACK_STORE": str(tmp_path / "store"), "DOCKER_CONFIG": os.devnull}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    digest, tags = done.stdout.splitlines()
    with client_for(registry.host) as client:
        assert RegistryRepository(client, repo).get_manifest("1.0.0").digest == digest
    assert ast.literal_eval(tags) == ("1.0.0",)


def test_no_module_imports_a_private_name_of_an_api_module() -> None:
    """Rules live below the api, in the package that owns them; api modules share nothing private."""
    package = ROOT / "modelpack"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelpack.api._"):
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
    assert offenders == []
