"""The installed console script: version, help, and the usage-error boundary, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script() -> Path:
    # The console script installed into the same environment as the interpreter running the tests.
    script = Path(sys.executable).parent / "modelpack"
    if not script.exists():
        pytest.fail(f"console script not installed at {script}: run scripts/test (pip install -e .)")
    return script


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELPACK_VERBOSE"}
    return subprocess.run(
        [str(_script()), *args], capture_output=True, text=True, timeout=60, check=False, env=env, cwd=ROOT
    )


def _source_version() -> str:
    text = (ROOT / "modelpack" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert match, "modelpack/__init__.py declares no __version__"
    return match.group(1)


def test_version_prints_the_package_version() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"modelpack {_source_version()}"


def test_help_shows_usage() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: modelpack" in result.stdout
    assert "--version" in result.stdout


def test_unknown_command_is_a_usage_error_without_traceback() -> None:
    result = _run("no-such-command")
    assert result.returncode == 2
    assert "no-such-command" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_option_is_a_usage_error_without_traceback() -> None:
    result = _run("--no-such-option")
    assert result.returncode == 2
    assert "--no-such-option" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_lazy_command_table_matches_what_the_modules_register() -> None:
    # main() imports only the module named for the command; a command missing from the table would be
    # "No such command" when run, and a stale entry would import the wrong module.
    import importlib

    from modelpack.cli import _commands
    from modelpack.cli._app import app

    _commands.load_all()
    registered = {}
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        registered[name] = info.callback.__module__.rsplit(".", 1)[1]  # type: ignore[union-attr]
    for group in app.registered_groups:  # a typer sub-app (`dataset`): the module of its commands
        sub = group.typer_instance.registered_commands  # type: ignore[union-attr]
        module = sub[0].callback.__module__.rsplit(".", 1)[1]  # type: ignore[union-attr]
        registered[str(group.name or group.typer_instance.info.name)] = module  # type: ignore[union-attr]
    assert registered == _commands.COMMANDS
    for module in set(_commands.COMMANDS.values()):
        importlib.import_module(f"modelpack.cli.{module}")


@pytest.mark.parametrize("command", ["rollback", "build", "ls", "test"])
def test_each_command_runs_when_only_its_module_is_loaded(command: str) -> None:
    out = _run(command, "--help")
    assert out.returncode == 0, out.stderr
    assert f"modelpack {command}" in out.stdout


def test_push_without_a_source_says_how_to_name_one(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(_script()), "push", "127.0.0.1:1/acme/iris"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: nothing to push") and "--from NAME:VERSION" in out.stderr
    assert "Traceback" not in out.stderr


def _commands() -> list[str]:
    from modelpack.cli import _commands as table

    return sorted(table.COMMANDS)


@pytest.mark.parametrize("command", _commands())
def test_every_help_has_examples_and_a_plain_usage_line(command: str) -> None:
    from support.clirun import run_main

    out = run_main(command, "--help")
    assert out.returncode == 0, out.stderr
    usage = out.stdout.splitlines()[0]
    assert usage.startswith(f"Usage: modelpack {command} [OPTIONS]"), usage
    assert not re.search(r"[{}<>]", usage), usage  # no {NAME} or <str>
    assert "Examples:" in out.stdout, f"`{command} --help` shows no example"
    assert not re.search(r"<(str|int|float|list\[str\]|path|int range)>", out.stdout), out.stdout
    # on a narrow terminal every example is still one line, as written (copyable), never cut mid-command
    wide = run_main(command, "--help", env={"COLUMNS": "300"}).stdout
    narrow = {line.strip() for line in run_main(command, "--help", env={"COLUMNS": "60"}).stdout.splitlines()}
    examples = [line.strip() for line in wide.splitlines() if line.strip().startswith("modelpack ")]
    cut = [e for e in examples if e not in narrow]
    assert examples and not cut, (command, cut)


@pytest.mark.parametrize(
    "args",
    [("push",), ("push", "x", "--bogus"), ("no-such-command",), ("ls", "--sort"), ("gc", "--grace", "x")],
)
def test_usage_errors_are_one_line(args: tuple[str, ...]) -> None:
    out = _run(*args)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "--help" in out.stderr and "Usage:" not in out.stderr + out.stdout


def test_verbose_after_the_command_and_quiet_prints_only_the_data(tmp_path: Path) -> None:
    from support.clirun import run_main

    project = ROOT / "examples" / "iris-onnx"
    env = {"MODELPACK_STORE": str(tmp_path / "store"), "SOURCE_DATE_EPOCH": "1700000000"}
    built = run_main("build", str(project), "--no-image", "-q", env=env)
    assert built.returncode == 0, built.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", built.stdout) and built.stderr == ""
    verbose = run_main("inspect", "iris-onnx:1.0.0", "-v", env=env)  # -v after the command
    assert verbose.returncode == 0, verbose.stderr
    missing = _run("inspect", "no-such:1.0.0", "--verbose", "--store", str(tmp_path / "store"))
    assert missing.returncode == 1 and "Traceback" in missing.stderr  # verbose took effect


def test_version_imports_nothing_but_the_package() -> None:
    """`modelpack --version` is answered before typer, httpx or rich are imported (issue 13 item 4); its
    time is measured in bench/cli_bench.py, not here."""
    code = (
        "import sys\n"
        "from modelpack.cli import main\n"
        "main(['--version'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('modelpack', 'typer', 'httpx', 'rich', "
        "'click', 'yaml')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    version, loaded = done.stdout.splitlines()
    assert version == f"modelpack {_source_version()}"
    assert loaded == "['modelpack', 'modelpack.cli']"


def test_ls_and_list_each_say_what_to_use_for_the_other(tmp_path: Path) -> None:
    from support.clirun import run_main

    env = {"MODELPACK_STORE": str(tmp_path / "store")}
    bare = run_main("ls", env=env)
    assert bare.returncode == 2 and "modelpack list" in bare.stderr
    named = run_main("list", "iris", env=env)
    assert named.returncode == 2 and "modelpack ls iris" in named.stderr
