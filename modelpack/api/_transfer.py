"""`push`, `pull`, `copy`, `tag` and `unpack`: moving releases between the store, layouts and registries.

Version tags name exactly one release, for good: a push names the release of the tag's version (the
project's, or `source`'s when its version matches), and a version tag that already names another digest
is refused unless `force`. Environment tags (those with promotion history) move only through promote and
rollback, so `tag` refuses them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelpack import unpack as unpacking
from modelpack.environment.actor import who
from modelpack.errors import DigestMismatchError, InputError, RefusedError, UsageError
from modelpack.evidence import signatures
from modelpack.evidence.attestations import TRAVELS
from modelpack.oci import digest as digests
from modelpack.oci.copy import CopyResult, copy_graph
from modelpack.oci.target import ProgressFn, no_progress
from modelpack.release.versions import check_overwrite, record_overwrite
from modelpack.release.view import load_release, release_version
from modelpack.targets import Location, Targets, split_name
from modelpack.trust import oms


@dataclass(frozen=True)
class TransferResult:
    """What push, pull and copy moved: one shape for all three."""

    source: str
    destination: str  # the reference written, tag included
    copy: CopyResult
    tags: tuple[str, ...] = ()  # pull: every local name it is stored under
    notes: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return self.copy.digest

    def to_json(self) -> dict[str, Any]:
        c = self.copy
        out: dict[str, Any] = {
            "source": self.source,
            "destination": self.destination,
            "digest": c.digest,
            "mediaType": c.media_type,
            "blobsCopied": c.blobs_copied,
            "blobsSkipped": c.blobs_skipped,
            "bytesCopied": c.bytes_copied,
            "manifests": c.manifests,
            "referrers": c.referrers,
            "notes": list(self.notes),
        }
        if self.tags:
            out["tags"] = list(self.tags)
        return out


PullResult = TransferResult


@dataclass(frozen=True)
class TagResult:
    reference: str
    digest: str
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "mediaType": self.media_type}


def _project_source(targets: Targets, project: Path, tag: str | None) -> str:
    """The project's release for `tag` (the release of that version), or its current version."""
    from modelpack.packfile import load_packfile
    from modelpack.packfile.loader import PACKFILE, find_packfile
    from modelpack.packfile.version import resolve_version

    if not (project / PACKFILE).is_file() and not project.is_file():
        raise UsageError(
            f"nothing to push: no --from, and no {PACKFILE} in {project}",
            hint="pass --from NAME:VERSION (see `modelpack list`) or --project DIR",
        )
    pf = load_packfile(find_packfile(project))
    built = targets.store_repository(pf.name).list_tags() if targets.store_path.exists() else []
    if tag is None:
        return f"{pf.name}:{resolve_version(pf.version, None, pf.root, packfile_name=pf.path.name)}"
    if tag not in built:
        versions = ", ".join(t for t in built if not digests.is_digest(t)) or "none"
        raise UsageError(
            f"no release {pf.name}:{tag} is built in the local store: a version tag names the release of "
            f"that version (built versions of {pf.name}: {versions})",
            hint=f"build it first: modelpack build --version {tag}; or pass --from NAME:VERSION",
        )
    return f"{pf.name}:{tag}"


def push(
    targets: Targets,
    destination: str,
    *,
    source: str | None = None,
    project: Path = Path(),
    force: bool = False,
    any_version: bool = False,
    progress: ProgressFn = no_progress,
    referrers: bool = True,
) -> TransferResult:
    """Push a release (from the store, a layout or a registry) to `destination`, `HOST/REPO[:TAG]`.

    Without `source`, the project's release of the destination tag's version (or of its current version
    when the destination has no tag). A `source` whose version differs from the tag is refused unless
    `any_version`; a tag that names another digest already is refused unless `force`."""
    dest = targets.open(destination, must_exist=False)
    if dest.kind == "store":
        raise UsageError(
            f"push needs a registry or an oci: layout; {destination!r} has no registry host",
            hint=f"e.g. ghcr.io/acme/{dest.repository}, or `modelpack copy` between local names",
        )
    src_text = source or _project_source(targets, project, dest.ref)
    src = targets.open(src_text)
    ref = src.need_ref("push")
    root = src.target.get_manifest(ref)
    version = release_version(root)
    tag = dest.ref or version or (None if digests.is_digest(ref) else ref)
    if tag is None or digests.is_digest(tag):
        raise UsageError(f"give the destination a tag: {src_text} has no version to reuse")
    if version is not None and tag != version and not any_version:
        raise UsageError(
            f"{src.display} is version {version}, not {tag}: a version tag names the release of that version",
            hint=f"push it as {dest.ref_text(version)}, or pass --any-version to tag it {tag} anyway",
        )
    shown = dest.ref_text(tag)
    from modelpack.environment.naming import enforce  # one referrers listing: the repository's rule

    enforce(dest.target, tag, shown)
    note = check_overwrite(dest.target, tag, root.digest, shown, force)
    result = copy_graph(
        src.target,
        dest.target,
        ref,
        tag,
        referrers=referrers,
        fallbacks=targets.base_sources(src.target, ref),
        progress=progress,
    )
    if note is not None:
        note += "; " + record_overwrite(dest.target, root, tag, note, who(targets.environ))
    return TransferResult(src.display, shown, result, notes=(note,) if note else ())


def copy(
    targets: Targets,
    source: str,
    destination: str,
    *,
    referrers: bool = False,
    progress: ProgressFn = no_progress,
) -> TransferResult:
    """Copy a whole graph between registries, layouts and local names; DST without a tag takes SRC's."""
    src = targets.open(source)
    ref = src.need_ref("copy")
    dst = targets.open(destination, must_exist=False)
    dest_tag = dst.ref or (None if digests.is_digest(ref) else ref)
    if dest_tag is None and dst.kind != "registry":
        raise UsageError(
            f"{destination!r} needs a tag: {source!r} is pinned by digest and a layout keeps only "
            "what a tag names",
            hint=f"e.g. {destination}:1.0.0",
        )
    # Only the local store keeps serving images without their base layers (they stay in the base's
    # registry); anywhere else the graph is complete and the extra manifest reads would be wasted.
    fallbacks = targets.base_sources(src.target, ref) if src.is_local else []
    result = copy_graph(
        src.target,
        dst.target,
        ref,
        dest_tag,
        referrers=referrers,
        carry=TRAVELS,
        fallbacks=fallbacks,
        progress=progress,
    )
    return TransferResult(src.display, dst.ref_text(dest_tag or result.digest), result)


def pull(
    targets: Targets,
    reference: str,
    *,
    also: Sequence[str] = (),
    progress: ProgressFn = no_progress,
) -> TransferResult:
    """Copy a release into the local store, under the name it has (`HOST/REPO:TAG`, so `--local` finds it
    offline; a layout's release under its record's NAME:VERSION) and every local name in `also`."""
    src = targets.open(reference)
    if src.is_local:
        raise UsageError(f"{reference} is already in the local store {targets.store_path}")
    ref = src.need_ref("pull")
    if src.kind == "layout":
        record = load_release(src.target, ref, layers=False, where=src.display).record
        names = [f"{record.name}:{record.version}"]
    else:
        names = [src.display]
    names += list(also)
    places = [_local_name(targets, n) for n in dict.fromkeys(names)]
    first, tag = places[0]
    result = copy_graph(src.target, first.target, ref, tag, carry=TRAVELS, progress=progress)
    root = first.target.get_manifest(tag)
    for where, t in places[1:]:
        where.target.put_manifest(t, root)
    return TransferResult(
        src.display, first.ref_text(tag), result, tags=tuple(w.ref_text(t) for w, t in places)
    )


def _local_name(targets: Targets, text: str) -> tuple[Location, str]:
    name, tag = split_name(text)
    if tag is None or digests.is_digest(tag):
        raise UsageError(f"local name {text!r} needs a tag", hint="e.g. iris:1.4.0")
    return targets.open(f"{name}:{tag}", local=True, must_exist=False), tag


def tag(targets: Targets, reference: str, new_tag: str) -> TagResult:
    """Point `new_tag` at the manifest `reference` names, in the same repository: the same bytes, so the
    same digest. An environment tag (one with promotion history) is refused: promote and rollback move it."""
    from modelpack.environment.history import has_history

    if "/" in new_tag or new_tag.startswith("oci:") or "@" in new_tag or ":" in new_tag:
        raise UsageError(
            f"NEWTAG {new_tag!r} is a reference, not a tag: tag works inside one repository",
            hint="pass just the tag, or use `modelpack copy` to another repository",
        )
    where = targets.open(reference)
    ref = where.need_ref("tag")
    display = where.ref_text(new_tag)
    if where.reference is not None and not where.reference.is_layout:
        where.reference.with_tag(new_tag)  # validates the registry tag grammar
    elif where.kind != "registry":
        from modelpack.store.layout import check_tag

        check_tag(new_tag)
    if has_history(where.target, new_tag, where.repository if where.is_local else None):
        raise RefusedError(
            f"{display} is an environment (it has promotion history): it moves only through promote and "
            "rollback",
            hint=f"modelpack promote {where.display} {new_tag}",
        )
    manifest = where.target.get_manifest(ref)
    reported = where.target.put_manifest(new_tag, manifest)
    if reported != manifest.digest:
        raise DigestMismatchError(
            f"{display} was stored as {reported}, not {manifest.digest}: the destination changed the bytes"
        )
    return TagResult(display, manifest.digest, manifest.media_type)


def unpack(
    targets: Targets,
    reference: str,
    dest: Path,
    *,
    kinds: Sequence[str] = unpacking.ALL,
    force: bool = False,
    local: bool = False,
    progress: ProgressFn = no_progress,
) -> unpacking.UnpackResult:
    """Write a release's files into `dest` (models/, code/, docs/, datasets/), every digest verified; and
    its model signature as `dest/model.sig` when it has one and every kind was unpacked (the signature
    covers all the files, so `model_signing verify` on a partial folder could only fail)."""
    where = targets.open(reference, local=local)
    with targets.pulled_copy_hint(reference, local=local):
        result = unpacking.unpack(
            where.target,
            where.need_ref("unpack"),
            dest,
            kinds=kinds,
            force=force,
            progress=progress,
            where=where.display,
        )
    if set(kinds) != set(unpacking.ALL):
        return result
    signature = signatures.model_signature(where.target, result.release.bundle.digest)
    if signature is None:
        return result
    _write_signature(dest / oms.SIGNATURE_FILE, signature, force)
    return replace(result, files=tuple(sorted((*result.files, oms.SIGNATURE_FILE))))


def _write_signature(path: Path, data: bytes, force: bool) -> None:
    if os.path.lexists(path) and (not force or not path.is_file() or path.is_symlink()):
        raise InputError(
            f"{path} already exists: the release's files are unpacked, its model signature is not",
            hint="pass --force to overwrite it",
        )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
