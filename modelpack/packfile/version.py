"""Which version a build is: `--version`, else modelpack.yaml's `version`, else the git tag `vX.Y.Z` on HEAD.

The flag wins so CI can stamp a release from its trigger (`--version ${{ github.ref_name }}`) without
editing the file. The result must be a valid OCI tag, since the release is pushed under it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from modelpack.errors import InputError, UsageError
from modelpack.record.git import Runner
from modelpack.record.git import run_git as default_run_git

_OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_RELEASE_TAG = re.compile(r"^v(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$")


TAG_HINT = "use letters, digits, '.', '_' and '-', at most 128 characters, e.g. 1.4.0"


def is_oci_tag(version: str) -> bool:
    return bool(_OCI_TAG.match(version))


def version_from_tags(tags: Sequence[str]) -> str | None:
    """The X.Y.Z of the highest `vX.Y.Z` tag among `tags` (the tags on HEAD), or None."""
    found = [m.group(1) for t in tags if (m := _RELEASE_TAG.match(t.strip()))]
    if not found:
        return None
    return max(found, key=_release_key)


def _release_key(version: str) -> tuple[tuple[int, ...], int, str]:
    core, _, pre = version.partition("-")
    # A release sorts above its own pre-releases (1.0.0 > 1.0.0-rc1).
    return tuple(int(p) for p in core.split(".")), 0 if pre else 1, pre


def resolve_version(
    file_version: str | None,
    flag_version: str | None,
    directory: Path,
    *,
    run_git: Runner = default_run_git,
    packfile_name: str = "modelpack.yaml",
) -> str:
    """The build's version; `run_git(args, cwd) -> stdout or None` is injected."""
    if flag_version is not None:
        if not is_oci_tag(flag_version):
            raise UsageError(f"--version {flag_version!r} cannot be an OCI tag", hint=TAG_HINT)
        return flag_version
    if file_version is not None:
        if not is_oci_tag(file_version):
            raise InputError(f"{packfile_name}: version {file_version!r} cannot be an OCI tag", hint=TAG_HINT)
        return file_version
    out = run_git(["tag", "--points-at", "HEAD"], directory)
    version = version_from_tags(out.splitlines() if out else [])
    if version is None:
        raise InputError(
            f"no version: {packfile_name} has no 'version', no --version was given, "
            "and HEAD has no vX.Y.Z git tag",
            hint="add 'version: 1.0.0' to modelpack.yaml, pass --version 1.0.0, or tag HEAD with v1.0.0",
        )
    return version
