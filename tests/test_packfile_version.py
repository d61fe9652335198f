"""Version resolution: --version, else modelpack.yaml, else the vX.Y.Z tag on HEAD (a real git repository)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from modelpack.errors import InputError, UsageError
from modelpack.packfile.version import resolve_version, version_from_tags


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


def test_flag_wins_then_file_then_tag(repo: Path) -> None:
    git(repo, "tag", "v2.0.0")
    assert resolve_version("1.0.0", "3.0.0", repo) == "3.0.0"
    assert resolve_version("1.0.0", None, repo) == "1.0.0"
    assert resolve_version(None, None, repo) == "2.0.0"


def test_highest_release_tag_on_head_and_other_tags_ignored(repo: Path) -> None:
    for tag in ("v1.2.0-rc1", "v1.2.0", "v1.10.0-beta", "nightly", "v1.9.9"):
        git(repo, "tag", tag)
    assert resolve_version(None, None, repo) == "1.10.0-beta"
    assert version_from_tags(["v1.2.0-rc1", "v1.2.0"]) == "1.2.0"
    assert version_from_tags(["release", "1.0.0", "v1.0"]) is None


def test_no_version_anywhere(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(InputError, match=r"no version: .*add 'version: 1\.0\.0'"):
        resolve_version(None, None, repo)
    # not a git checkout at all
    with pytest.raises(InputError, match="no version"):
        resolve_version(None, None, tmp_path_factory.mktemp("plain"))


def test_tag_on_an_older_commit_does_not_count(repo: Path) -> None:
    git(repo, "tag", "v1.0.0")
    (repo / "f").write_text("y")
    git(repo, "commit", "-q", "-am", "two")
    with pytest.raises(InputError, match="no version"):
        resolve_version(None, None, repo)


def test_invalid_versions() -> None:
    with pytest.raises(UsageError, match=r"--version '1\.0 beta' cannot be an OCI tag"):
        resolve_version(None, "1.0 beta", Path("."))
    with pytest.raises(InputError, match="version '-1' cannot be an OCI tag"):
        resolve_version("-1", None, Path("."))


def test_git_runner_is_injected() -> None:
    calls: list[Sequence[str]] = []

    def fake(args: Sequence[str], cwd: Path) -> str | None:
        calls.append(args)
        return "v0.1.0\nv0.2.0\n"

    assert resolve_version(None, None, Path("/nowhere"), run_git=fake) == "0.2.0"
    assert calls == [["tag", "--points-at", "HEAD"]]
