"""A rendered tree (relative path -> bytes) and how it lands on disk: whole directories swapped in, so a
reader (git, a GitOps controller) never sees half of a rendering nor a file left from an older one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from modelpack.errors import InputError

Tree = Mapping[str, bytes]  # "overlays/prod/kustomization.yaml" -> its bytes


def dump(*docs: Any) -> bytes:
    """YAML in the given key order (the API's own), one document per object."""
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=1000).encode()


def top_dirs(tree: Tree) -> list[str]:
    """The directories a tree owns outright: `base`, `overlays/<env>`, `gitops/<env>`."""
    owned = set()
    for rel in tree:
        parts = PurePosixPath(rel).parts
        owned.add("/".join(parts[:1] if parts[0] == "base" else parts[:2]))
    return sorted(owned)


def write_tree(root: Path, tree: Tree) -> list[Path]:
    """Writes `tree` under `root`: each owned directory is built beside its final place and renamed over
    it, so what was there before (an older overlay with its canary files) is replaced whole. Files of
    `root` outside the owned directories are left alone (a repository's README, other environments)."""
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is not a directory", hint="give --kubernetes a directory to write into")
    written = []
    for owned in top_dirs(tree):
        final = root / owned
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            for rel, data in sorted(tree.items()):
                if rel == owned or rel.startswith(owned + "/"):
                    path = staging / rel[len(owned) + 1 :]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    written.append(final / rel[len(owned) + 1 :])
            for d in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
                d.chmod(0o755)
            _swap(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return sorted(written)


def _swap(staging: Path, final: Path) -> None:
    if not final.exists():
        os.replace(staging, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
    os.replace(final, old / "x")  # out of the way first: rename cannot replace a non-empty directory
    try:
        os.replace(staging, final)
    except OSError:
        os.replace(old / "x", final)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def relative(paths: Sequence[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]
