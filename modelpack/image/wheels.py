"""The serving image's dependency tree: wheels for the TARGET platform, installed on the host.

Nothing here runs inside a container or needs network there: pip downloads binary wheels for the image's
platform and Python (`--platform/--python-version/--only-binary=:all:`), then installs them into a plain
directory with `--target`, which becomes the deps layer. Locks are complete and pinned, so `--no-deps`
makes the installed set exactly the lock: no resolver, no drift between build and serve. Because pip
resolves nothing, the lock is checked to be complete first, from the downloaded wheels' own METADATA:
every Requires-Dist that holds on the image's platform and Python (extras followed) must be pinned.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from modelpack.errors import BuildError, InputError

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

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the image, for the lock's entries and the wheels' Requires-Dist."""
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.arch,
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
        }


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


def select_wheels(
    wheel_dir: Path, pins: Mapping[str, str], sources: Mapping[str, str] | None = None
) -> list[Path]:
    """The files of `wheel_dir` (a cache shared by many builds) that are exactly the pinned versions:
    wheels for `pins`, source distributions for `sources`."""
    wanted = {canonicalize_name(n): Version(v) for n, v in pins.items()}
    wanted_src = {canonicalize_name(n): Version(v) for n, v in (sources or {}).items()}
    out = []
    for p in sorted(wheel_dir.iterdir()):
        try:
            if p.name.endswith(".whl"):
                name, version, _build, _tags = parse_wheel_filename(p.name)
                if wanted.get(name) == version:
                    out.append(p)
            elif p.name.endswith((".tar.gz", ".zip")):
                name, version = parse_sdist_filename(p.name)
                if wanted_src.get(name) == version:
                    out.append(p)
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            continue
    return out


def wheel_requires(wheel: Path) -> list[Requirement]:
    """The Requires-Dist of a wheel, read from its METADATA without unpacking it."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise BuildError(f"{wheel.name} has {len(names)} .dist-info/METADATA files, not one")
            text = zf.read(names[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile) as e:
        raise BuildError(f"cannot read the wheel {wheel}: {e}") from None
    out = []
    for line in HeaderParser().parsestr(text).get_all("Requires-Dist") or []:
        try:
            out.append(Requirement(line))
        except InvalidRequirement:
            raise BuildError(f"{wheel.name}: its Requires-Dist {line!r} is not a valid requirement") from None
    return out


def check_complete(
    wheel_dir: Path, pins: Mapping[str, str], target: TargetPlatform, *, lock: str = "the lock"
) -> None:
    """Refuse pins that leave out something a pinned wheel requires on `target` (extras followed), or
    pin it at a version the requirement excludes: `pip install --no-deps` would install them happily
    and the image would fail at import. Pins with no wheel in `wheel_dir` (sdists) are not checked."""
    env = target.marker_environment()
    locked = {canonicalize_name(n): (n, v) for n, v in pins.items()}
    wheels_of = {parse_wheel_filename(p.name)[0]: p for p in select_wheels(wheel_dir, pins)}
    requires: dict[str, list[Requirement]] = {}
    problems: dict[str, tuple[str, str]] = {}  # normalized name -> (name as written, what is wrong)
    todo = [(name, frozenset[str]()) for name in sorted(locked)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or name not in wheels_of:
            continue
        seen.add((name, extras))
        if name not in requires:
            requires[name] = wheel_requires(wheels_of[name])
        who = f"{locked[name][0]} {locked[name][1]}"
        who += f" (extras {', '.join(sorted(extras))})" if extras else ""
        for req in requires[name]:
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in ("", *sorted(extras))
            ):
                continue
            dep = canonicalize_name(req.name)
            if dep not in locked:
                problems.setdefault(dep, (req.name, f"{req.name} (required by {who}: {req})"))
                continue
            pinned = locked[dep][1]
            if req.specifier and not req.specifier.contains(pinned, prereleases=True):
                problems.setdefault(dep, (req.name, f"{req.name} {pinned} does not satisfy {who}: {req}"))
            todo.append((dep, frozenset(canonicalize_name(x) for x in req.extras)))
    if problems:
        shown = "; ".join(problems[k][1] for k in sorted(problems))
        missing = [problems[k][0] for k in sorted(problems)]
        raise InputError(
            f"{lock} is not complete for the image: {shown}",
            hint=f"pin {', '.join(missing)} in {lock}: regenerate it with pip-compile or uv pip compile "
            "for Python " + target.python + " on linux, so it holds every dependency",
        )
