"""uv.lock: `[[package]]` tables with name, version, source, sdist/wheels hashes.

The project's own entry (source `editable` or `virtual`) is not a dependency and is skipped. When the
project entry is there, only what its runtime `dependencies` reach (following extras) is kept, so the
dev group (pytest, ruff, ...) stays out of the serving image. Packages from git, a URL or a local path
cannot be downloaded by version and are refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelpack.bundle.lockfile.model import LockedPackage, check_hash, check_version, normalize_name
from modelpack.bundle.lockfile.tomlutil import as_list, as_str, as_table, read_toml
from modelpack.errors import InputError

_PROJECT_SOURCES = ("editable", "virtual")
_FOREIGN_SOURCES = ("git", "url", "path", "directory")


def parse(text: str, display: str) -> tuple[list[LockedPackage], str | None]:
    """(packages, requires-python)."""
    doc = read_toml(text, display)
    entries = [as_table(e, f"{display}: [[package]]") for e in as_list(doc.get("package", []), display)]
    projects = [e for e in entries if _source_kind(e) in _PROJECT_SOURCES]
    others = [e for e in entries if _source_kind(e) not in _PROJECT_SOURCES]
    if projects:
        others = _reachable(projects, others, display)
    packages: list[LockedPackage] = []
    for e in others:
        name = normalize_name(as_str(e.get("name"), f"{display}: [[package]] name"))
        where = f"{display}: package {name}"
        kind = _source_kind(e)
        if kind in _FOREIGN_SOURCES:
            source = as_table(e.get("source"), where)
            raise InputError(
                f"{where} comes from {kind} {source.get(kind)!r}",
                hint="only packages from an index can be pinned and downloaded by version",
            )
        version = check_version(e.get("version"), where)
        hashes: list[str] = []
        sdist = e.get("sdist")
        if isinstance(sdist, Mapping) and "hash" in sdist:
            hashes.append(check_hash(sdist["hash"], f"{where} sdist"))
        for wheel in as_list(e.get("wheels", []), where):
            if isinstance(wheel, Mapping) and "hash" in wheel:
                hashes.append(check_hash(wheel["hash"], f"{where} wheel"))
        packages.append(LockedPackage(name, version, tuple(sorted(set(hashes))), _markers(e)))
    requires = doc.get("requires-python")
    return packages, requires if isinstance(requires, str) else None


def _source_kind(entry: Mapping[str, Any]) -> str | None:
    source = entry.get("source")
    if isinstance(source, Mapping):
        return next((k for k in (*_PROJECT_SOURCES, *_FOREIGN_SOURCES, "registry") if k in source), None)
    return None


def _markers(entry: Mapping[str, Any]) -> str | None:
    # A package resolved differently per environment ("forked" resolution) carries the markers of its fork.
    markers = entry.get("resolution-markers")
    if isinstance(markers, list) and markers and all(isinstance(m, str) for m in markers):
        return markers[0] if len(markers) == 1 else " or ".join(f"({m})" for m in markers)
    return None


def _reachable(
    projects: list[Mapping[str, Any]], others: list[Mapping[str, Any]], display: str
) -> list[Mapping[str, Any]]:
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for e in others:
        by_name.setdefault(normalize_name(str(e.get("name", ""))), []).append(e)
    keep: dict[int, Mapping[str, Any]] = {}
    todo: list[Mapping[str, Any]] = []
    for project in projects:
        todo.extend(_deps(project, (), display))
    seen: set[tuple[str, str | None, tuple[str, ...]]] = set()
    while todo:
        dep = todo.pop()
        name = normalize_name(str(dep.get("name", "")))
        version = dep.get("version") if isinstance(dep.get("version"), str) else None
        extras = tuple(sorted(str(x) for x in dep.get("extra", []) if isinstance(x, str)))
        if (name, version, extras) in seen:
            continue
        seen.add((name, version, extras))
        for entry in by_name.get(name, []):
            if version is not None and entry.get("version") != version:
                continue
            keep[id(entry)] = entry
            todo.extend(_deps(entry, extras, display))
    return [e for e in others if id(e) in keep]


def _deps(entry: Mapping[str, Any], extras: tuple[str, ...], display: str) -> list[Mapping[str, Any]]:
    out = [d for d in as_list(entry.get("dependencies", []), display) if isinstance(d, Mapping)]
    optional = entry.get("optional-dependencies")
    if isinstance(optional, Mapping):
        for extra in extras:
            out.extend(d for d in as_list(optional.get(extra, []), display) if isinstance(d, Mapping))
    return out
