"""`unpack`: a release's files into a folder, safely.

Unpack streams each selected layer through `safe_extract` into a staging folder inside DIR, so a layer
whose digest turns out wrong (verified when its stream ends) leaves nothing behind: the staging folder is
removed and DIR is as it was. Only once every layer is verified, and no file would be overwritten without
`force`, are the files moved into place (renames on one filesystem, no copy).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import DigestMismatchError, InputError, UsageError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Progress, ProgressFn, Target, no_progress
from modelpack.oci.untar import Refuse, bundle_path, safe_extract, vcs_path
from modelpack.release.view import ReleaseView, load_release

# `--filter` names -> the layer media types they select, in the order of mediatypes.LAYER_KINDS.
FILTERS: dict[str, frozenset[str]] = {
    group: frozenset(t for t, k in mt.LAYER_KINDS.items() if k.group == group)
    for group in dict.fromkeys(k.group for k in mt.LAYER_KINDS.values() if k.group)
}
ALL = tuple(FILTERS)


@dataclass(frozen=True)
class UnpackResult:
    release: ReleaseView
    dest: Path
    layers: tuple[Descriptor, ...]  # the layers extracted
    files: tuple[str, ...]  # paths written under dest, sorted

    @property
    def size(self) -> int:
        return sum(d.size for d in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "dest": str(self.dest),
            "digest": self.release.digest,
            "layers": [d.to_json() for d in self.layers],
            "files": list(self.files),
        }


def parse_filter(text: str | None) -> tuple[str, ...]:
    """`model,code` -> ("model", "code"); None or empty -> everything."""
    if not text:
        return ALL
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FILTERS]
    if unknown or not names:
        raise UsageError(
            f"--filter {text!r}: unknown kind {', '.join(unknown) or '(none)'}",
            hint=f"choose from {','.join(ALL)}",
        )
    return names


def unpack(
    target: Target,
    ref: str,
    dest: Path,
    *,
    kinds: Sequence[str] = ALL,
    force: bool = False,
    progress: ProgressFn = no_progress,
    where: str | None = None,
) -> UnpackResult:
    """Extract the selected layers of release `ref` into `dest`, every digest verified first."""
    release = load_release(target, ref, where=where)
    assert release.bundle_manifest is not None  # load_release reads it when layers are asked for
    wanted = frozenset().union(*(FILTERS[k] for k in kinds))
    layers = tuple(d for d in release.bundle_manifest.layers if d.media_type in wanted)
    files = extract(target, layers, dest, force=force, progress=progress, refuse=bundle_path)
    return UnpackResult(release, dest, layers, tuple(sorted(files)))


def extract(
    target: Target,
    layers: Sequence[Descriptor],
    dest: Path,
    *,
    force: bool = False,
    progress: ProgressFn = no_progress,
    keep: Callable[[str], bool] | None = None,
    check: Callable[[Path, list[str]], None] | None = None,
    refuse: Refuse = vcs_path,
) -> list[str]:
    """Stage `layers` inside `dest`, every digest verified, then move them in; the files written.

    `keep` selects files by path (the others, and folders left empty, are not moved); `check` sees the
    staging folder and the kept files before anything moves, and refuses by raising; `refuse` names the
    member paths no layer may hold (safe_extract)."""
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest} exists and is not a folder", hint="name a new or existing folder")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".modelpack-unpack-", dir=dest))
    try:
        for desc in layers:
            _extract_layer(target, desc, staging, progress, refuse)
        entries = _staged(staging)
        if keep is not None:
            entries = _kept(entries, staging, keep)
        if check is not None:
            check(staging, [e for e in entries if not (staging / e).is_dir()])
        _check_free(entries, staging, dest, force)
        files = _move(entries, staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(dest.iterdir()):
            dest.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return files


def _kept(entries: Sequence[str], staging: Path, keep: Callable[[str], bool]) -> list[str]:
    """The files `keep` selects and the folders on their way, in the staged order."""
    files = [e for e in entries if not (staging / e).is_dir() and keep(e)]
    folders = {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
    chosen = set(files) | folders
    return [e for e in entries if e in chosen]


def _extract_layer(
    target: Target, desc: Descriptor, staging: Path, progress: ProgressFn, refuse: Refuse
) -> None:
    with target.read_blob(desc) as chunks:
        counted = _counting(chunks, desc, progress)
        try:
            # Later layers win within one release, as in an image; DIR itself is only checked later.
            safe_extract(counted, staging, force=True, refuse=refuse)
        except InputError:
            # A corrupted blob usually breaks the tar first: say the real cause when the digest settles it.
            for _ in counted:
                pass
            raise
        # extraction stops at the end-of-archive marker; read to the end so the digest check runs.
        for _ in counted:
            pass


def _counting(chunks: Iterable[bytes], desc: Descriptor, progress: ProgressFn) -> Iterator[bytes]:
    done = 0
    for chunk in chunks:
        done += len(chunk)
        progress(Progress(desc.digest, done, desc.size))
        yield chunk
    if done != desc.size:  # the Target verifies too; this guards a Target that forgets
        raise DigestMismatchError(f"blob {desc.digest} has {done} bytes, its descriptor says {desc.size}")


def _staged(staging: Path) -> list[str]:
    """Relative paths of everything extracted, parents before children."""
    found: list[str] = []
    for folder, dirs, files in os.walk(staging):
        rel = Path(folder).relative_to(staging)
        for name in sorted(dirs) + sorted(files):
            found.append((rel / name).as_posix())
        dirs.sort()
    return found


def _check_free(entries: Sequence[str], staging: Path, dest: Path, force: bool) -> None:
    root = Path(os.path.realpath(dest))
    taken: list[Path] = []
    for rel in entries:
        src, target = staging / rel, dest / rel
        real_parent = Path(os.path.realpath(target.parent))
        if real_parent != root and root not in real_parent.parents:
            raise InputError(f"refused: {target} would be written through a link that leaves {dest}")
        if not os.path.lexists(target):
            continue
        src_is_dir = src.is_dir() and not src.is_symlink()
        target_is_dir = target.is_dir()  # a link to a folder inside DEST is that folder
        if src_is_dir and target_is_dir:
            real = Path(os.path.realpath(target))
            if real != root and root not in real.parents:
                raise InputError(f"refused: {target} is a link to {real}, which leaves {dest}")
            continue
        if src_is_dir or target_is_dir:
            raise InputError(f"{target} exists and is {'not ' if src_is_dir else ''}a folder; not replaced")
        if not force:
            taken.append(target)
    if taken:
        more = f" (and {len(taken) - 1} more files)" if len(taken) > 1 else ""
        raise InputError(
            f"{taken[0]} already exists{more}", hint="pass --force to overwrite, or use an empty folder"
        )


def _move(entries: Sequence[str], staging: Path, dest: Path) -> list[str]:
    files: list[str] = []
    for rel in entries:
        src, target = staging / rel, dest / rel
        if src.is_dir() and not src.is_symlink():
            target.mkdir(exist_ok=True)
            continue
        os.replace(src, target)
        files.append(rel)
    return files
