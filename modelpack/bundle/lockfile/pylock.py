"""pylock.toml (PEP 751): `[[packages]]` with name, version, marker, and wheels/sdist `hashes` tables.

Packages from a VCS, a directory or an archive URL cannot be downloaded by version and are refused.
"""

from __future__ import annotations

from modelpack.bundle.lockfile.model import LockedPackage, check_hash, check_version, normalize_name
from modelpack.bundle.lockfile.tomlutil import as_list, as_str, as_table, read_toml
from modelpack.errors import InputError

_FOREIGN = ("vcs", "directory", "archive")


def parse(text: str, display: str) -> tuple[list[LockedPackage], str | None]:
    """(packages, requires-python)."""
    doc = read_toml(text, display)
    lock_version = doc.get("lock-version")
    if not isinstance(lock_version, str) or not lock_version.startswith("1."):
        raise InputError(
            f"{display}: lock-version {lock_version!r} is not supported", hint="PEP 751 lock-version 1.x"
        )
    packages: list[LockedPackage] = []
    for raw in as_list(doc.get("packages", []), display):
        entry = as_table(raw, f"{display}: [[packages]]")
        name = normalize_name(as_str(entry.get("name"), f"{display}: [[packages]] name"))
        where = f"{display}: package {name}"
        foreign = next((k for k in _FOREIGN if k in entry), None)
        if foreign is not None:
            raise InputError(
                f"{where} comes from a {foreign}",
                hint="only packages from an index can be pinned and downloaded by version",
            )
        version = check_version(entry.get("version"), where)
        hashes: set[str] = set()
        files = [*as_list(entry.get("wheels", []), where)]
        if "sdist" in entry:
            files.append(entry["sdist"])
        for f in files:
            table = as_table(f, f"{where} file")
            for algo, digest in as_table(table.get("hashes", {}), f"{where} hashes").items():
                hashes.add(check_hash(f"{algo}:{digest}", f"{where} hashes"))
        marker = entry.get("marker")
        packages.append(
            LockedPackage(name, version, tuple(sorted(hashes)), marker if isinstance(marker, str) else None)
        )
    requires = doc.get("requires-python")
    return packages, requires if isinstance(requires, str) else None
