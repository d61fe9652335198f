"""The verbs as library functions. Each takes plain values and injected collaborators, returns data,
and never prints: the CLI (or a user's script) renders the result."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from modelpack.bundle.build import BundleResult, build_bundle
from modelpack.bundle.git import git_info
from modelpack.errors import InputError
from modelpack.oci.layout import LayoutStore
from modelpack.oci.statcache import StatCache
from modelpack.packfile import load_packfile

PACKFILE = "modelpack.yaml"


def find_packfile(path: Path) -> Path:
    """`path` is a project directory or a packfile itself."""
    candidate = path / PACKFILE if path.is_dir() else path
    if not candidate.is_file():
        raise InputError(
            f"no {PACKFILE} in {path}", hint="run `modelpack init` there, or pass the project directory"
        )
    return candidate


def build(
    project: Path,
    store: LayoutStore,
    *,
    version: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> BundleResult:
    pf = load_packfile(find_packfile(project))
    with StatCache(store.stat_cache_path) as cache:
        return build_bundle(pf, store, cache, version=version, git=git_info(pf.root), environ=environ)
