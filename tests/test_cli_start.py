"""What a short command imports, how many connections it opens and whether it loads a CA bundle (issue 13
item 4). Start times themselves are measured by bench/cli_bench.py, never asserted here: what is asserted
is the cause of a slow start (a module imported, a TLS context filled, a second connection)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.places import attach_report, make_release
from support.registry_helpers import client_for
from support.release_fixtures import EXAMPLES, build, push

# Runs `main(argv)` in a fresh interpreter, as the console script does, and writes what happened to a file
# (stdout is the command's): the modules loaded, the TCP connections made, the CA bundles loaded.
PROBE = """
import json, ssl, sys
connects = []
sys.addaudithook(lambda event, args: connects.append(str(args[1])) if event == "socket.connect" else None)
ca_loads = []
_load = ssl.SSLContext.load_verify_locations
def _counted(self, *a, **kw):
    ca_loads.append(1)
    return _load(self, *a, **kw)
ssl.SSLContext.load_verify_locations = _counted
from modelpack.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    modules = sorted(m for m, v in sys.modules.items() if v is not None)  # None: made absent on purpose
    json.dump({"code": code, "modules": modules, "connects": connects, "caLoads": len(ca_loads)}, out)
"""

# Never on a short command's path: the HTTP stack, the template/YAML readers, the bundle builder, the image
# code, pydantic (typer >= 0.29's per-parameter validation; see modelpack/cli/_coerce.py), rich (progress
# bars on a terminal only), trio (httpcore imports it when installed; modelpack speaks sync HTTP).
HEAVY = ("pydantic", "rich", "trio", "yaml", "jinja2", "modelpack.bundle", "modelpack.image")
NETWORK = ("httpx", "httpcore", "certifi", "modelpack.registry")  # ssl: the probe imports it


def probe(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = tmp_path / "probe.json"
    full = {**{k: v for k, v in os.environ.items() if k != "MODELPACK_VERBOSE"}, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=full,
    )
    assert out.exists(), done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    result["stdout"], result["stderr"] = done.stdout, done.stderr
    return result


def loaded(result: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    return [m for m in result["modules"] if any(m == n or m.startswith(n + ".") for n in names)]


def test_version_imports_no_framework_and_no_http(tmp_path: Path) -> None:
    done = probe(tmp_path, "--version")
    assert done["code"] == 0 and done["stdout"].startswith("modelpack ")
    assert loaded(done, ("typer", "click", "modelpack", *HEAVY, *NETWORK)) == ["modelpack", "modelpack.cli"]
    assert done["connects"] == []


@pytest.mark.parametrize("command", ["rollback", "promote", "inspect", "history"])
def test_a_commands_help_imports_no_http_stack_and_no_heavy_module(tmp_path: Path, command: str) -> None:
    done = probe(tmp_path, command, "--help")
    assert done["code"] == 0, done["stderr"]
    assert f"Usage: modelpack {command}" in done["stdout"]
    assert loaded(done, (*HEAVY, *NETWORK)) == []
    # only the command's own module is imported, not every command's
    assert "modelpack.cli.build_cmds" not in done["modules"]
    assert done["connects"] == [] and done["caLoads"] == 0


def test_a_usage_error_imports_no_http_stack_and_no_heavy_module(tmp_path: Path) -> None:
    """typer's error display would use rich if it were asked to (rich_markup_mode=None): it is not."""
    done = probe(tmp_path, "rollback", "--bogus")
    assert done["code"] == 2 and "No such option: --bogus" in done["stderr"]
    assert loaded(done, (*HEAVY, *NETWORK)) == []


def test_a_local_command_converts_its_values_without_pydantic(tmp_path: Path) -> None:
    """`list` converts all its values and defaults (str, bool, Path): none of them needs pydantic."""
    done = probe(tmp_path, "list", "--json", env={"MODELPACK_STORE": str(tmp_path / "store")})
    assert done["code"] == 0, done["stderr"]
    assert loaded(done, HEAVY) == []
    # nor the HTTP stack: the registry client loads when a registry is used (registry/__init__.py)
    assert loaded(done, ("httpx", "httpcore", "certifi", "modelpack.registry.client")) == []


@pytest.fixture
def released(registry: RegistryProcess, repo: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`repo` with 1.0.0 then 1.1.0 promoted to prod, each with a passing test report, and the iris
    example built and pushed as 2.0.0 (inspect reads modelpack-built releases only)."""
    from modelpack.registry.client import RegistryRepository
    from modelpack.store.layout import LayoutStore

    with client_for(registry.host) as client:
        target = RegistryRepository(client, repo)
        for v in ("1.0.0", "1.1.0"):
            attach_report(target, make_release(target, v, v))
    ref = f"{registry.host}/{repo}"
    store = LayoutStore(tmp_path_factory.mktemp("store"))
    built = build(EXAMPLES / "iris-onnx", store, "2.0.0")
    push(store, built.tag, f"{ref}:2.0.0")
    for v in ("1.0.0", "1.1.0"):
        done = run_main("promote", f"{ref}:{v}", "prod", "--reason", "x", env={"DOCKER_CONFIG": os.devnull})
        assert done.returncode == 0, done.stderr
    return ref


@pytest.mark.parametrize(
    "args",
    [("inspect", "{ref}:2.0.0"), ("rollback", "{ref}", "prod", "--reason", "bad p95")],
    ids=["inspect", "rollback"],
)
def test_a_loopback_command_reuses_its_connections_and_loads_no_ca_bundle(
    tmp_path: Path, released: str, args: tuple[str, ...]
) -> None:
    """Plain HTTP to a loopback registry: requests share kept-alive connections, no CA bundle is parsed,
    nothing heavy is imported. --verbose logs one line per request, which is what is counted."""
    argv = [a.format(ref=released) for a in args]
    done = probe(tmp_path, "-v", *argv, env={"DOCKER_CONFIG": os.devnull, "MODELPACK_STORE": str(tmp_path)})
    assert done["code"] == 0, done["stderr"]
    requests = [line for line in done["stderr"].splitlines() if line.startswith("debug: ") and "/v2/" in line]
    # Kept-alive connections, one per concurrent read (inspect reads 3 things at once, a move's state
    # read 2), never one per request: a dropped keep-alive would make requests == connections.
    assert 1 <= len(done["connects"]) <= 3, done["connects"]
    assert len(requests) >= 2 * len(done["connects"]), done["stderr"]
    assert done["caLoads"] == 0
    assert loaded(done, HEAVY) == []


def test_plain_conversion_agrees_with_typers_own() -> None:
    """modelpack/cli/_coerce.py converts plain values without pydantic; on every input here it gives typer's
    own result, or steps aside (and typer's conversion, with its error message, runs)."""
    import typer.core
    from typer import _coercion as coercion  # typer >= 0.29 (the dev lock's); older ones need no pydantic
    from typer.models import ArgumentInfo, OptionInfo

    from modelpack.cli import _app  # noqa: F401  (installs the plain conversion)
    from modelpack.cli._coerce import convert

    assert getattr(typer.core.build_runtime_param, "modelpack_plain", False)
    bounded = OptionInfo(min=1, max=10)
    cases: list[tuple[Any, Any, Any]] = [
        (str, OptionInfo(), "prod"),
        (str, OptionInfo(), ""),
        (str, OptionInfo(), "tab\there"),
        (list[str], OptionInfo(), ("a=1", "b")),
        (list[str], OptionInfo(), ["x"]),
        (bool, OptionInfo(), True),
        (bool, OptionInfo(), "yes"),
        (int, OptionInfo(), "42"),
        (int, OptionInfo(), "-7"),
        (int, OptionInfo(), 3),
        (int, OptionInfo(), "1_000"),
        (int, OptionInfo(), " 5"),
        (int, OptionInfo(), "3.0"),
        (int, bounded, "5"),
        (int, bounded, "0"),
        (int, OptionInfo(min=1, clamp=True), "0"),
        (float, OptionInfo(), "1.5"),
        (float, OptionInfo(), "2"),
        (float, OptionInfo(), ".5e-3"),
        (float, OptionInfo(), 1.25),
        (float, OptionInfo(), "inf"),
        (Path, ArgumentInfo(), "some/dir"),
        (Path, ArgumentInfo(), "/"),
        (Path, ArgumentInfo(), "-"),
        (Path, ArgumentInfo(), Path("a/default")),
        (Path, ArgumentInfo(), ""),
    ]
    for annotation, info, value in cases:
        descriptor = coercion.resolve_type_descriptor(annotation, info)
        try:
            theirs: Any = coercion.build_runtime_param(descriptor)._coerce_value(value, param=None, ctx=None)
        except Exception as e:  # typer's own refusal: ours must step aside
            theirs = e
        ours = convert(annotation, info, value, None, None)
        if ours is not _unconverted():
            assert not isinstance(theirs, Exception), (annotation, value, theirs)
            assert (type(ours), ours) == (type(theirs), theirs), (annotation, value)
        mine = typer.core.build_runtime_param(descriptor)
        try:
            via_ours: Any = mine._coerce_value(value, param=None, ctx=None)
        except Exception as e:
            via_ours = e
        if isinstance(theirs, Exception):
            assert type(via_ours) is type(theirs) and str(via_ours) == str(theirs), (annotation, value)
        else:
            assert (type(via_ours), via_ours) == (type(theirs), theirs), (annotation, value)


def _unconverted() -> object:
    from modelpack.cli import _coerce

    return _coerce._UNCONVERTED


# The builder's modules: push, pull and test move or run releases that are already built, so none of these
# may be on their path (image/config.py and image/gzlayer.py are read by `test` to unpack an image: allowed).
BUILDER = (
    "modelpack.bundle",
    "modelpack.dataset",
    "modelpack.image.base",
    "modelpack.image.build",
    "modelpack.image.docker_builder",
    "modelpack.image.wheels",
)


def test_push_pull_and_test_import_no_builder_module(
    tmp_path: Path, registry: RegistryProcess, repo: str
) -> None:
    from modelpack.registry.client import RegistryRepository

    with client_for(registry.host) as client:
        make_release(RegistryRepository(client, repo), "1.0.0", "1.0.0")
    ref = f"{registry.host}/{repo}"
    env = {"DOCKER_CONFIG": os.devnull, "MODELPACK_STORE": str(tmp_path / "store")}
    runs = {
        "pull": probe(tmp_path, "pull", f"{ref}:1.0.0", env=env),
        "push": probe(tmp_path, "push", f"{ref}-b:1.0.0", "--from", f"{ref}:1.0.0", env=env),
        # a bad --runtime is refused after the command's modules are imported, before anything runs
        "test": probe(tmp_path, "test", f"{ref}:1.0.0", "--runtime", "bogus", env=env),
    }
    assert runs["pull"]["code"] == 0, runs["pull"]["stderr"]
    assert runs["push"]["code"] == 0, runs["push"]["stderr"]
    assert runs["test"]["code"] == 2 and "--runtime 'bogus'" in runs["test"]["stderr"], runs["test"]["stderr"]
    for command, done in runs.items():
        assert "modelpack.api._transfer" in done["modules"] or command == "test", command
        assert loaded(done, BUILDER) == [], (command, loaded(done, BUILDER))
    assert "modelpack.testing.testrun" in runs["test"]["modules"]
