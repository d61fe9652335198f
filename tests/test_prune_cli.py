"""`modelpack prune` as a user runs it: a dry run without a terminal unless --yes, the --json shape,
a prompt on a terminal, one line for a bad age, a missing rule or a registry without deletes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli, script
from support.places import attach_report, make_release
from support.prune_repos import populate

from modelpack import api
from modelpack.errors import RegistryError
from modelpack.targets import Targets


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    with Targets(store_path=tmp_path / "store", environ={}) as t:
        yield t


def test_cli_prune_is_a_dry_run_without_a_terminal_unless_yes_and_its_json_has_the_schema(
    registry: RegistryProcess, repo: str, targets: Targets, tmp_path: Path
) -> None:
    r = populate(registry.host, repo, targets)
    before = sorted(r.target.list_tags())
    env = {"MODELPACK_STORE": str(tmp_path / "cli-store")}
    dry = run_cli("prune", r.ref, "--keep-last", "2", "--history", "1", "--json", env=env, stdin="")
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["dryRun"] is True and out["deleted"] == [] and out["rule"]["historyDepth"] == 1
    assert {v["tag"] for v in out["versions"] if v["action"] != "keep"} == {
        "0.9.0",
        "1.0.0",
        "1.1.0",
        "1.2.0",
        "1.2.1",
        "1.4.0",
    }
    assert sorted(r.target.list_tags()) == before

    human = run_cli("prune", r.ref, "--keep-last", "2", "--dry-run", "--yes", env=env, stdin="")
    assert human.returncode == 0 and "prod names it now" in human.stdout and "dry run" in human.stderr
    assert sorted(r.target.list_tags()) == before

    done = run_cli(
        "prune",
        r.ref,
        "--keep-last",
        "2",
        "--keep",
        "1.1.*",
        "--history",
        "1",
        "--yes",
        "--json",
        env=env,
        stdin="",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["deletedVersions"]) == ["0.9.0", "1.0.0", "1.2.0", "1.2.1", "1.4.0"]
    assert "1.0.0" not in r.target.list_tags() and "1.1.0" in r.target.list_tags()


@pytest.mark.parametrize("age", ["90", "3 days", "1y", "0d"])
def test_cli_a_bad_age_is_one_line(age: str, tmp_path: Path) -> None:
    done = run_cli("prune", "iris", "--older-than", age, env={"MODELPACK_STORE": str(tmp_path)}, stdin="")
    assert done.returncode == 2
    assert done.stderr.count("\n") <= 2 and "is not an age" in done.stderr and "90d" in done.stderr


def test_cli_prune_without_a_rule_says_which_to_give(tmp_path: Path) -> None:
    done = run_cli("prune", "iris", env={"MODELPACK_STORE": str(tmp_path)}, stdin="")
    assert done.returncode == 2 and "--keep-last N, --older-than AGE" in done.stderr


def test_a_registry_without_deletes_gives_one_clear_line_and_nothing_changes(
    registry_without_deletes: RegistryProcess, repo: str, targets: Targets
) -> None:
    host = registry_without_deletes.host
    where = targets.open(f"{host}/{repo}")
    for v in ("1.0.0", "1.1.0"):
        attach_report(where.target, make_release(where.target, v, v))
    before = sorted(where.target.list_tags())
    with pytest.raises(RegistryError) as e:
        api.prune(targets, f"{host}/{repo}", keep_last=1)
    assert "does not allow deletes (HTTP 405)" in e.value.message and "\n" not in e.value.message
    assert "storage.delete.enabled" in str(e.value.hint)
    assert sorted(where.target.list_tags()) == before

    done = run_cli("prune", f"{host}/{repo}", "--keep-last", "1", "--yes", stdin="")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "does not allow deletes" in done.stderr and "Traceback" not in done.stderr


def test_cli_prune_on_a_terminal_shows_the_plan_and_deletes_only_when_told_yes(
    registry: RegistryProcess, repo: str, targets: Targets, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{repo}"
    where = targets.open(ref)
    for v in ("1.0.0", "1.1.0"):
        attach_report(where.target, make_release(where.target, v, v))
    env = {**os.environ, "MODELPACK_STORE": str(tmp_path / "cli-store")}
    for answer, left in (("n", ["1.0.0", "1.1.0"]), ("y", ["1.1.0"])):
        terminal, child = pty.openpty()
        try:
            os.write(terminal, f"{answer}\n".encode())
            done = subprocess.run(
                [str(script()), "prune", ref, "--keep-last", "1"],
                stdin=child,
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
                check=False,
            )
        finally:
            os.close(terminal)
            os.close(child)
        assert done.returncode == 0, done.stderr
        assert "not among the newest 1" in done.stdout and "delete 1 version?" in done.stdout
        assert sorted(t for t in where.target.list_tags() if not t.startswith("sha256-")) == left
    assert "1.0.0" in done.stdout and "deleted manifest" in done.stdout
