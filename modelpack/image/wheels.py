"""The serving image's dependency tree: wheels for the TARGET platform, installed on the host.

Nothing here runs inside a container or needs network there: pip downloads binary wheels for the image's
platform and Python (`--platform/--python-version/--only-binary=:all:`), then installs them into a plain
directory with `--target`, which becomes the deps layer. Locks are complete and pinned, so `--no-deps`
makes the installed set exactly the lock: no resolver, no drift between build and serve.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpack.errors import BuildError

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False, timeout=1800
    )


@dataclass(frozen=True)
class TargetPlatform:
    """What the image runs: CPython `python` on `arch` Linux with glibc (manylinux)."""

    python: str = "3.11"
    arch: str = "x86_64"

    @property
    def pip_platforms(self) -> tuple[str, ...]:
        # Newest manylinux tags first; pip accepts any of them (plus pure-Python "any" wheels).
        tags = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014")
        return tuple(f"{t}_{self.arch}" for t in tags)

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp"]
        for p in self.pip_platforms:
            args += ["--platform", p]
        return args

    @property
    def oci_arch(self) -> str:
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(self.arch, self.arch)


class NoWheelError(BuildError):
    """A pinned package has no binary wheel for the target; `package` names it (as the lock spells it)."""

    def __init__(self, package: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.package = package


_NO_WHEEL = re.compile(
    r"(?:No matching distribution found for"
    r"|Could not find a version that satisfies the requirement) ([^\s(]+)"
)


def merge_requirements(user: dict[str, str], runtime: dict[str, str]) -> dict[str, str]:
    """The user's lock wins for every package it pins; the runtime's lock fills in what it lacks.

    The model's own code was validated against the user's versions; the runtime only needs its packages
    to be present in a version it supports, which its tests cover for the pinned range.
    """
    merged = dict(runtime)
    merged.update(user)
    return dict(sorted(merged.items()))


def requirements_text(pins: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def deps_key(requirements: str, target: TargetPlatform) -> str:
    """Identity of a deps tree: the same pins for the same platform give the same tree (and layer)."""
    h = hashlib.sha256()
    h.update(f"{target.python}|{target.arch}\n".encode())
    h.update(requirements.encode())
    return h.hexdigest()


def download_wheels(requirements: str, dest: Path, target: TargetPlatform, run: Runner = run_pip) -> None:
    """Fetch every pinned wheel for the target into `dest` (pip skips files already there)."""
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "requirements.txt"
    req.write_text(requirements)
    result = run(
        [
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(dest),
            "-r",
            str(req),
            *target.pip_args(),
        ]
    )
    if result.returncode != 0:
        missing = _NO_WHEEL.search(result.stderr)
        if missing:
            raise NoWheelError(
                missing.group(1),
                f"no wheel of {missing.group(1)} for linux/{target.oci_arch} Python {target.python}",
                hint="the daemonless builder installs binary wheels only; use `--builder docker` "
                "to build it from source inside a container",
            )
        raise BuildError(f"downloading wheels failed: {_last_line(result.stderr)}")


def install_tree(
    wheels: Path, requirements: str, tree: Path, target: TargetPlatform, run: Runner = run_pip
) -> None:
    """Install the pinned wheels from `wheels` into `tree`, offline, as the image's site-packages."""
    if tree.exists():
        shutil.rmtree(tree)
    req = wheels / "requirements.txt"
    req.write_text(requirements)
    result = run(
        [
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(tree),
            "-r",
            str(req),
            *target.pip_args(),
        ]
    )
    if result.returncode != 0:
        raise BuildError(f"installing wheels into the deps layer failed: {_last_line(result.stderr)}")
    _make_host_independent(tree)


def _make_host_independent(tree: Path) -> None:
    """Drop what records the build host: console scripts (their shebang is the host's Python; the image
    runs `python3 -m`) and direct_url.json (the wheel's path on this machine). RECORD keeps listing them,
    which pip tolerates; it is never used in the image."""
    shutil.rmtree(tree / "bin", ignore_errors=True)
    for p in tree.glob("*.dist-info/direct_url.json"):
        p.unlink()
    for p in tree.rglob("__pycache__"):
        shutil.rmtree(p, ignore_errors=True)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "pip gave no output"
