"""docker credential helpers as an attacker could configure them: a helper name with path characters, a
helper only found through a relative PATH entry, one that cannot be run, one that hangs. Real programs
run through the real runner; the CLI cases go through a scripted registry on 127.0.0.1 asking for Basic."""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clirun import run_cli
from support.scripted import Scripted, scripted_server

from modelpack.errors import AuthError, InputError
from modelpack.registry.dockerconfig import Credential, DockerConfig, subprocess_runner

MARKER = "helper-ran"


def write_config(directory: Path, data: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data))
    return directory


def program(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(mode)
    return path


def marker_helper(path: Path, marker: Path) -> Path:
    """A helper that leaves a trace when run: proof it was executed."""
    return program(path, f'#!/bin/sh\ntouch "{marker}"\necho \'{{"Username":"x","Secret":"y"}}\'\n')


@pytest.fixture
def challenging_registry() -> Iterator[str]:
    """Answers everything with a Basic challenge, so the CLI looks its credentials up."""
    with scripted_server(Scripted(lambda n: (401, {"WWW-Authenticate": 'Basic realm="r"'}, b""))) as host:
        yield host


def test_helper_name_with_path_characters_runs_nothing(tmp_path: Path, monkeypatch) -> None:
    # credsStore "../evil" would run ./docker-credential-../evil: a file of the project being built.
    work = tmp_path / "project"
    marker = tmp_path / MARKER
    marker_helper(work / "docker-credential-.." / "evil", marker)
    config = write_config(tmp_path / "docker", {"credsStore": "../evil"})
    monkeypatch.chdir(work)
    with pytest.raises(InputError, match=r"credential helper '\.\./evil' for ghcr\.io is not a plain name"):
        DockerConfig.load(config).credential("ghcr.io")
    assert not marker.exists()


def test_cli_with_a_path_helper_name_is_one_error_line_and_runs_nothing(
    tmp_path: Path, challenging_registry: str
) -> None:
    work = tmp_path / "project"
    marker = tmp_path / MARKER
    marker_helper(work / "docker-credential-.." / "evil", marker)
    config = write_config(tmp_path / "docker", {"credHelpers": {challenging_registry: "../evil"}})
    env = {"DOCKER_CONFIG": str(config)}
    cli = run_cli("inspect", f"{challenging_registry}/acme/iris:1", env=env, cwd=work)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert cli.stderr.startswith("error: ") and "not a plain name" in cli.stderr
    assert not marker.exists()


@pytest.mark.parametrize("entry", [".", ""], ids=["dot", "empty"])
def test_helper_is_never_found_through_a_relative_path_entry(tmp_path: Path, monkeypatch, entry: str) -> None:
    work = tmp_path / "project"
    marker = tmp_path / MARKER
    marker_helper(work / "docker-credential-local", marker)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("PATH", f"{entry}{os.pathsep}{bin_dir}" if entry else f"{os.pathsep}{bin_dir}")
    config = write_config(tmp_path / "docker", {"credsStore": "local"})
    with pytest.raises(AuthError, match=r"docker-credential-local for ghcr\.io is not installed"):
        DockerConfig.load(config).credential("ghcr.io")
    assert not marker.exists()


def test_helper_on_an_absolute_path_entry_is_run(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / MARKER
    bin_dir = tmp_path / "bin"
    marker_helper(bin_dir / "docker-credential-good.v2_x", marker)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    config = write_config(tmp_path / "docker", {"credsStore": "good.v2_x"})
    assert DockerConfig.load(config).credential("ghcr.io") == Credential("x", "y")
    assert marker.exists()


@pytest.mark.parametrize(
    ("body", "mode", "reason"),
    [
        ('#!/bin/sh\necho "{}"\n', 0o644, r"is not executable"),
        ("\x7fELF not really a program\n", 0o755, r"cannot be run: Exec format error"),
    ],
    ids=["not-executable", "not-a-program"],
)
def test_cli_with_a_helper_that_cannot_run_is_one_error_line(
    tmp_path: Path, challenging_registry: str, body: str, mode: int, reason: str
) -> None:
    bin_dir = tmp_path / "bin"
    program(bin_dir / "docker-credential-broken", body, mode)
    config = write_config(tmp_path / "docker", {"credsStore": "broken"})
    env = {"DOCKER_CONFIG": str(config), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cli = run_cli("inspect", f"{challenging_registry}/acme/iris:1", env=env)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1, cli.stderr
    assert cli.stderr.startswith("error: credential helper docker-credential-broken"), cli.stderr
    assert "internal error" not in cli.stderr
    assert re.search(reason, cli.stderr), cli.stderr


def test_a_hanging_helper_is_an_auth_error_after_a_bounded_wait(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    program(bin_dir / "docker-credential-stuck", "#!/bin/sh\nexec sleep 60\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    config = write_config(tmp_path / "docker", {"credsStore": "stuck"})
    runner = functools.partial(subprocess_runner, timeout=1.0)
    started = time.monotonic()
    hung = r"docker-credential-stuck for ghcr\.io: .* did not answer within 1 s"
    with pytest.raises(AuthError, match=hung):
        DockerConfig.load(config).credential("ghcr.io", runner)
    assert time.monotonic() - started < 20
