"""Pipfile.lock (JSON): the "default" section; versions are written "==x". "develop" is dev-only: skipped."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from modelpack.bundle.lockfile.model import LockedPackage, check_hash, check_version, normalize_name
from modelpack.errors import InputError

_FOREIGN = ("git", "path", "file", "editable", "hg", "svn", "bzr")
_PYTHON = re.compile(r"^(\d+\.\d+)")


def parse(text: str, display: str) -> tuple[list[LockedPackage], str | None]:
    """(packages, the Python version in _meta.requires)."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise InputError(f"{display}: not valid JSON: nested too deeply") from None
    except ValueError as e:
        raise InputError(
            f"{display}:{getattr(e, 'lineno', 1)}: not valid JSON: {getattr(e, 'msg', e)}"
        ) from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("default", {}), Mapping):
        raise InputError(f'{display}: expected an object with a "default" section')
    packages: list[LockedPackage] = []
    for raw_name, entry in doc.get("default", {}).items():
        name = normalize_name(str(raw_name))
        where = f"{display}: default.{raw_name}"
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: expected an object with version and hashes")
        foreign = next((k for k in _FOREIGN if k in entry), None)
        if foreign is not None:
            raise InputError(
                f"{where} is a {foreign} dependency ({entry.get(foreign)!r})",
                hint="only packages from an index can be pinned and downloaded by version",
            )
        version = entry.get("version")
        if not isinstance(version, str) or not version.startswith("=="):
            raise InputError(f"{where}: version {version!r} is not pinned with ==", hint="run pipenv lock")
        pinned = check_version(version[2:], where)
        hashes = entry.get("hashes", [])
        if not isinstance(hashes, list):
            raise InputError(f"{where}: hashes must be a list")
        checked = tuple(sorted({check_hash(h, f"{where} hashes") for h in hashes}))
        markers = entry.get("markers")
        packages.append(LockedPackage(name, pinned, checked, markers if isinstance(markers, str) else None))
    return packages, _python(doc)


def _python(doc: Mapping[str, object]) -> str | None:
    meta = doc.get("_meta")
    requires = meta.get("requires") if isinstance(meta, Mapping) else None
    if not isinstance(requires, Mapping):
        return None
    for key in ("python_version", "python_full_version"):
        value = requires.get(key)
        if isinstance(value, str) and (m := _PYTHON.match(value)):
            return m.group(1)
    return None
