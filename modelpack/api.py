"""The verbs as library functions. Each takes plain values and injected collaborators, returns data,
and never prints: the CLI (or a user's script) renders the result."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.bundle.build import BundleResult, build_bundle
from modelpack.errors import UsageError
from modelpack.image import wheels
from modelpack.image.base import resolve_base
from modelpack.image.build import ANN_BASE_NAME, ImageResult, build_image
from modelpack.oci.copy import CopyResult, copy_graph
from modelpack.oci.layout import LayoutStore
from modelpack.oci.model import Descriptor, Index, parse
from modelpack.oci.statcache import StatCache
from modelpack.oci.target import ProgressFn, Target, no_progress
from modelpack.packfile import BUILDERS, Packfile, load_packfile
from modelpack.packfile import PACKFILE as PACKFILE  # re-exported: the CLI's verbs use them
from modelpack.packfile import find_packfile as find_packfile
from modelpack.record.git import git_info
from modelpack.release.index import release_index
from modelpack.targets import Targets

BASE_ENV = "MODELPACK_BASE_IMAGE"
DOCKER_NETWORK_ENV = "MODELPACK_DOCKER_NETWORK"  # the Docker builder's network for RUN steps


@dataclass(frozen=True)
class BuildResult:
    bundle: BundleResult
    image: ImageResult | None
    index: Descriptor | None  # the release index, when an image was built
    tag: str  # local store tag: "name:version"

    @property
    def digest(self) -> str:
        """What the store tag names: the release index, or the bare bundle with --no-image."""
        return (self.index or self.bundle.manifest).digest


def base_reference(pf: Packfile, flag: str | None, environ: Mapping[str, str]) -> str:
    """--base wins, then MODELPACK_BASE_IMAGE (so CI can point every build at a mirror), then the packfile."""
    return flag or environ.get(BASE_ENV) or pf.serving.base_image


def target_environment(target: wheels.TargetPlatform) -> dict[str, str]:
    """PEP 508 marker values of the image, for choosing the lock's entries that apply to it."""
    return {
        "python_version": target.python,
        "python_full_version": f"{target.python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": target.arch,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def build(
    project: Path,
    store: LayoutStore,
    *,
    version: str | None = None,
    environ: Mapping[str, str] = os.environ,
    image: bool = False,
    base: str | None = None,
    targets: Targets | None = None,
    builder: str | None = None,
    docker: Any = None,
    log: Callable[[str], None] = lambda _line: None,
) -> BuildResult:
    """Build the bundle and, with `image`, the serving image and the release index over both.

    `builder` is "daemonless" or "docker" (None: the packfile's serving.builder). The Docker builder uses
    the `docker` client given (else one from the environment) and streams the engine's output to `log`."""
    pf = load_packfile(find_packfile(project))
    builder = builder or pf.serving.builder
    if builder not in BUILDERS:
        raise UsageError(f"unknown builder {builder!r}", hint=f"use one of: {', '.join(BUILDERS)}")
    if image and pf.serving.system_packages and builder != "docker":
        raise UsageError(
            f"{pf.path}: serving.system_packages needs the Docker builder", hint="build with --builder docker"
        )
    with StatCache(store.stat_cache_path) as cache:
        bundle = build_bundle(pf, store, cache, version=version, git=git_info(pf.root), environ=environ)
        if not image:
            return BuildResult(bundle=bundle, image=None, index=None, tag=bundle.tag)
        base_ref = base_reference(pf, base, environ)
        own = targets is None
        targets = targets or Targets(environ=environ)
        try:
            where = targets.open(base_ref, local=False)
            base_image = resolve_base(where.target, where.ref or "latest", base_ref)
        finally:
            if own:
                targets.close()
        platform = wheels.TargetPlatform(python=pf.dependencies.python)
        pins = bundle.lock.pins(target_environment(platform))
        if builder == "docker":
            from modelpack.image.docker_builder import build_with_docker  # needs the docker SDK

            img = build_with_docker(
                store,
                bundle,
                base_image,
                user_pins=pins,
                target=platform,
                port=pf.serving.port,
                env=dict(pf.serving.env),
                system_packages=pf.serving.system_packages,
                client=docker,
                log=log,
                # an engine without a default bridge (like the test engine) needs "host" for apt-get
                network_mode=environ.get(DOCKER_NETWORK_ENV) or None,
            )
        else:
            img = build_image(
                store,
                cache,
                bundle,
                base_image,
                user_pins=pins,
                target=platform,
                port=pf.serving.port,
                env=dict(pf.serving.env),
            )
    index = release_index(img.manifest, bundle.manifest, bundle.record)
    stored = store.put_document(index, tag=bundle.tag)
    return BuildResult(bundle=bundle, image=img, index=stored, tag=bundle.tag)


def base_sources(source: Target, ref: str, targets: Targets) -> list[Target]:
    """Where the base layers of the serving images under `ref` live (their images' base.name annotation)."""
    raw = source.get_manifest(ref)
    doc = parse(raw.raw, raw.media_type)
    children = (
        [parse(source.get_manifest(d.digest).raw) for d in doc.manifests] if isinstance(doc, Index) else [doc]
    )
    names = sorted({c.annotations[ANN_BASE_NAME] for c in children if ANN_BASE_NAME in c.annotations})
    return [targets.open(n, local=False).target for n in names]


def push(
    targets: Targets,
    source_ref: str,
    dest_text: str,
    *,
    progress: ProgressFn = no_progress,
    referrers: bool = True,
) -> tuple[CopyResult, str]:
    """Push a local release (`name:version` in the store, or any reference) to `dest_text`.

    Without a tag in `dest_text` the release's version is used. Returns the copy result and the
    destination reference pushed."""
    src = targets.open(source_ref)
    if src.ref is None:
        raise UsageError(f"{source_ref} names no tag or digest to push")
    dest = targets.open(dest_text, local=False)
    tag = dest.ref or _version_of(source_ref)
    result = copy_graph(
        src.target,
        dest.target,
        src.ref,
        tag,
        referrers=referrers,
        fallbacks=base_sources(src.target, src.ref, targets),
        progress=progress,
    )
    pushed = str(dest.reference.with_tag(tag)) if dest.reference else f"{dest_text}:{tag}"
    return result, pushed


def _version_of(local_tag: str) -> str:
    if ":" not in local_tag:
        raise UsageError(f"give the destination a tag: {local_tag} has no version to reuse")
    return local_tag.rsplit(":", 1)[1]
