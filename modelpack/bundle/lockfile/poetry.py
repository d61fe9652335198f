"""poetry.lock: `[[package]]` tables with name, version, files hashes; dev-only packages are skipped.

Poetry 1.x marks dev packages with `category = "dev"` and keeps hashes under `[metadata.files]`;
Poetry 2.x lists `groups` per package and hashes in `files`. Both are read. Packages from git, a path,
a file or a URL (`[package.source] type`) cannot be downloaded by version and are refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelpack.bundle.lockfile.model import LockedPackage, check_hash, check_version, normalize_name
from modelpack.bundle.lockfile.tomlutil import as_list, as_str, as_table, read_toml
from modelpack.errors import InputError

_FOREIGN = ("git", "directory", "file", "url")


def parse(text: str, display: str) -> tuple[list[LockedPackage], str | None]:
    """(packages, the [metadata] python-versions constraint)."""
    doc = read_toml(text, display)
    metadata = as_table(doc.get("metadata", {}), f"{display}: [metadata]")
    legacy_files = metadata.get("files", {}) if isinstance(metadata.get("files"), Mapping) else {}
    packages: list[LockedPackage] = []
    for raw in as_list(doc.get("package", []), display):
        entry = as_table(raw, f"{display}: [[package]]")
        name = normalize_name(as_str(entry.get("name"), f"{display}: [[package]] name"))
        where = f"{display}: package {name}"
        if not _is_main(entry):
            continue
        source = entry.get("source")
        if isinstance(source, Mapping) and source.get("type") in _FOREIGN:
            raise InputError(
                f"{where} comes from {source.get('type')} {source.get('url')!r}",
                hint="only packages from an index can be pinned and downloaded by version",
            )
        version = check_version(entry.get("version"), where)
        files = entry.get("files")
        if files is None:
            files = legacy_files.get(entry.get("name"), legacy_files.get(name, []))
        hashes = {
            check_hash(f["hash"], f"{where} file {f.get('file', '?')}")
            for f in as_list(files, where)
            if isinstance(f, Mapping) and "hash" in f
        }
        packages.append(LockedPackage(name, version, tuple(sorted(hashes)), _markers(entry)))
    python = metadata.get("python-versions")
    return packages, python if isinstance(python, str) else None


def _is_main(entry: Mapping[str, Any]) -> bool:
    groups = entry.get("groups")
    if isinstance(groups, list):
        return "main" in groups
    return bool(entry.get("category", "main") == "main")


def _markers(entry: Mapping[str, Any]) -> str | None:
    markers = entry.get("markers")
    if isinstance(markers, Mapping):  # Poetry 2: per group
        markers = markers.get("main")
    return markers if isinstance(markers, str) and markers.strip() else None
