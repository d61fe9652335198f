"""CI definitions lint clean: every GitHub workflow in the repository passes actionlint, and the shell
scripts that CI and developers run pass shellcheck."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fixtures.lint import actionlint, shellcheck, workflow_files

ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = ["scripts/test-env", "scripts/test", "scripts/demo", "scripts/lock", ".ci/run"]


def test_workflows_pass_actionlint() -> None:
    workflows = workflow_files(ROOT)
    assert ROOT / ".github" / "workflows" / "ci.yml" in workflows
    result = actionlint(workflows, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    # Guards the test above: a linter that accepts anything would make it pass vacuously.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope }}\n"
    )
    result = actionlint([broken])
    assert result.returncode != 0
    assert "nope" in result.stdout


def test_actionlint_runs_shellcheck_on_run_blocks(tmp_path: Path) -> None:
    unquoted = tmp_path / "unquoted.yml"
    unquoted.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - run: |\n          f="a b"\n          cat $f\n'
    )
    result = actionlint([unquoted])
    assert result.returncode != 0
    assert "SC2086" in result.stdout


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_pass_shellcheck(script: str) -> None:
    path = ROOT / script
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    result = shellcheck(path)
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
