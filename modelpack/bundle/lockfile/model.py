"""The parsed lockfile: a frozen list of exactly pinned packages, whatever format it came from."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelpack.errors import InputError
from modelpack.record.record import LockSummary

FORMATS = ("requirements", "uv", "poetry", "pipfile", "pylock")
_HASH_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HASH = re.compile(r"^(sha256|sha384|sha512):([0-9a-f]+)$")


@dataclass(frozen=True)
class LockedPackage:
    name: str  # PEP 503 normalized: lowercase, runs of -_. become "-"
    version: str
    hashes: tuple[str, ...] = ()  # "sha256:<hex>", sorted; every file the lock allows for this version
    markers: str | None = None  # PEP 508 environment marker, e.g. 'python_version < "3.12"'

    def requirement(self) -> str:
        pin = f"{self.name}=={self.version}"
        return f"{pin} ; {self.markers}" if self.markers else pin


@dataclass(frozen=True)
class Lock:
    path: Path
    format: str  # one of FORMATS
    sha256: str  # "sha256:<hex>" of the lockfile's bytes
    python_version: str | None  # "3.11" when the lock says which Python it was resolved for
    packages: tuple[LockedPackage, ...]  # sorted by name, then markers
    requires_python: str | None = None  # the lock's Python range when it states one, e.g. ">=3.11"
    # Global pip options of a requirements lock (index URLs may hold credentials: kept out of repr).
    options: tuple[str, ...] = field(default=(), repr=False)

    def as_requirements(self) -> str:
        """A pip-installable text: `name==version ; markers` with `--hash` lines.

        Hashes are written only when every package has some, because pip's hash-checking mode refuses a
        file in which one requirement has none.
        """
        with_hashes = bool(self.packages) and all(p.hashes for p in self.packages)
        lines = [*self.options]
        for p in self.packages:
            if with_hashes:
                lines.append(" \\\n".join([p.requirement(), *(f"    --hash={h}" for h in p.hashes)]))
            else:
                lines.append(p.requirement())
        return "".join(line + "\n" for line in lines)

    def check_python(self, python: str, *, where: str | None = None) -> None:
        """Refuse a lock resolved for another Python than the image runs (`python` is "3.11").

        A stated version must match; a `requires-python` range (PEP 440) must admit it. Poetry's own
        range syntax (`^3.11`) is not PEP 440 and is not checked.
        """
        name = where or str(self.path)
        if self.python_version is not None and self.python_version != python:
            raise InputError(
                f"{name} was resolved for Python {self.python_version}, but dependencies.python is {python}",
                hint="regenerate the lock for that Python, or change dependencies.python",
            )
        if self.requires_python:
            try:
                allowed = SpecifierSet(self.requires_python)
            except InvalidSpecifier:
                return
            if not allowed.contains(python, prereleases=True) and not allowed.contains(f"{python}.0"):
                raise InputError(
                    f"{name} requires Python {self.requires_python}, but dependencies.python is {python}",
                    hint="regenerate the lock for that Python, or change dependencies.python",
                )

    def select(self, environment: Mapping[str, str]) -> tuple[LockedPackage, ...]:
        """The packages whose markers hold in `environment` (PEP 508 marker variables, e.g.
        {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}; variables not
        given take the running interpreter's values). This is what an image for that target installs."""
        out = []
        for p in self.packages:
            if p.markers is None:
                out.append(p)
                continue
            try:
                if Marker(p.markers).evaluate(dict(environment)):
                    out.append(p)
            except (InvalidMarker, UndefinedEnvironmentName) as e:
                where = f"{self.path}: {p.name}"
                raise InputError(f"{where}: cannot evaluate marker {p.markers!r}: {e}") from None
        return tuple(out)

    def pins(self, environment: Mapping[str, str]) -> dict[str, str]:
        """name -> version of `select(environment)`."""
        return {p.name: p.version for p in self.select(environment)}

    def versions(self) -> dict[str, str]:
        """name -> version; a package locked twice under different markers shows its versions joined."""
        out: dict[str, str] = {}
        for p in self.packages:
            out[p.name] = p.version if p.name not in out else f"{out[p.name]},{p.version}"
        return out

    def summary(self, path: str) -> LockSummary:
        """The record's view of this lock; `path` is how the lockfile is named in the bundle."""
        return LockSummary(
            path=path,
            sha256=self.sha256,
            format=self.format,
            python=self.python_version,
            packages=self.versions(),
        )


def normalize_name(name: str) -> str:
    return canonicalize_name(name)


def check_version(version: object, where: str) -> str:
    """A PEP 440 version, as written; anything else is an InputError naming `where`."""
    if not isinstance(version, str) or not version.strip():
        raise InputError(f"{where}: has no version")
    try:
        Version(version)
    except InvalidVersion:
        raise InputError(f"{where}: {version!r} is not a valid version") from None
    return version.strip()


def check_hash(value: object, where: str) -> str:
    """`algo:hex` with algo sha256/sha384/sha512 and the right number of lowercase hex digits."""
    text = value.strip().lower() if isinstance(value, str) else ""
    m = _HASH.match(text)
    if not m or len(m.group(2)) != _HASH_LENGTHS[m.group(1)]:
        raise InputError(
            f"{where}: {value!r} is not a well-formed hash",
            hint="expected sha256: followed by 64 hex digits",
        )
    return text


def sort_packages(packages: Iterable[LockedPackage], where: str) -> tuple[LockedPackage, ...]:
    """Sorted, with a package pinned twice for the same environment refused."""
    out = sorted(packages, key=lambda p: (p.name, p.markers or "", p.version))
    for p in out:
        if p.markers is not None:
            try:
                Marker(p.markers)
            except InvalidMarker as e:
                msg = str(e).splitlines()[0]
                raise InputError(f"{where}: {p.name}: marker {p.markers!r} is not valid: {msg}") from None
    seen: dict[tuple[str, str], str] = {}
    for p in out:
        key = (p.name, p.markers or "")
        if key in seen and seen[key] != p.version:
            raise InputError(
                f"{where}: {p.name} is locked at both {seen[key]} and {p.version}",
                hint="a lock pins one version per environment; re-generate it",
            )
        seen[key] = p.version
    deduped = {(p.name, p.markers or "", p.version): p for p in out}
    return tuple(deduped.values())
