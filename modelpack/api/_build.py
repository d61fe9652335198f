"""`build`: a project into the local store (bundle, serving image, the release index over both)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.api._attest import BuildInputs, attest
from modelpack.bundle.build import BundleResult, FromRun, build_bundle
from modelpack.errors import AuthError, RegistryError, UsageError
from modelpack.image import wheels
from modelpack.image.base import resolve_base
from modelpack.image.build import ImageResult, build_image
from modelpack.image.request import ImageRequest
from modelpack.oci.model import Descriptor
from modelpack.packfile import BUILDERS, Packfile, load_packfile
from modelpack.packfile.loader import PACKFILE, find_packfile
from modelpack.record.dataset import PublishedDataset
from modelpack.record.git import git_info
from modelpack.release.index import release_index
from modelpack.store.layout import LayoutStore
from modelpack.store.statcache import StatCache
from modelpack.targets import Targets

__all__ = ["PACKFILE", "BuildResult", "base_reference", "build", "find_packfile", "target_environment"]

BASE_ENV = "MODELPACK_BASE_IMAGE"
DOCKER_NETWORK_ENV = "MODELPACK_DOCKER_NETWORK"  # the Docker builder's network for RUN steps


@dataclass(frozen=True)
class BuildResult:
    bundle: BundleResult
    image: ImageResult | None
    index: Descriptor | None  # the release index, when an image was built
    tag: str  # local store tag: "name:version"
    attestations: tuple[Descriptor, ...] = ()  # provenance and SBOM referrers of the index

    @property
    def digest(self) -> str:
        """What the store tag names: the release index, or the bare bundle with --no-image."""
        return (self.index or self.bundle.manifest).digest

    def to_json(self) -> dict[str, Any]:
        bundle = self.bundle
        out: dict[str, Any] = {
            "name": bundle.name,
            "version": bundle.version,
            "tag": self.tag,
            "digest": self.digest,
            "created": {"time": bundle.record.created, "from": bundle.created_from},
            "warnings": list(bundle.warnings),
            "bundle": {
                "manifest": bundle.manifest.to_json(),
                "config": bundle.config.to_json(),
                "layers": [d.to_json() for d in bundle.layers],
            },
        }
        if self.image is not None and self.index is not None:
            out["index"] = self.index.to_json()
            out["image"] = {
                "manifest": self.image.manifest.to_json(),
                "config": self.image.config.to_json(),
                "layers": [d.to_json() for d in self.image.layers],
                "base": {"name": self.image.base.name, "digest": self.image.base.digest},
            }
            out["attestations"] = [
                {"artifactType": d.artifact_type, "digest": d.digest} for d in self.attestations
            ]
        return out


def base_reference(pf: Packfile, flag: str | None, environ: Mapping[str, str]) -> str:
    """--base wins, then MODELPACK_BASE_IMAGE (so CI can point every build at a mirror), then the packfile."""
    return flag or environ.get(BASE_ENV) or pf.serving.base_image


def target_environment(target: wheels.TargetPlatform) -> dict[str, str]:
    """PEP 508 marker values of the image, for choosing the lock's entries that apply to it."""
    return target.marker_environment()


def build(
    targets: Targets,
    project: Path | str,
    *,
    version: str | None = None,
    environ: Mapping[str, str] | None = None,
    image: bool = False,
    base: str | None = None,
    builder: str | None = None,
    docker: Any = None,
    log: Callable[[str], None] = lambda _line: None,
    key: str | None = None,
    password: bytes | None = None,
    run: str | None = None,
    checkpoint: str | None = None,
    allow_version_mismatch: bool = False,
) -> BuildResult:
    """Build the bundle and, with `image`, the serving image and the release index over both, with its
    SLSA provenance (signed by the private key `key` names, when given) and CycloneDX SBOM as referrers.

    `builder` is "daemonless" or "docker" (None: the packfile's serving.builder). The Docker builder uses
    the `docker` client given (else one from the environment) and streams the engine's output to `log`.
    The release is written into `targets.store`; `environ` defaults to `targets.environ`.
    `run` (`build --run`): the weights from the run's checkpoint (`checkpoint`, else its last), the
    record's datasets, params, metrics and curves from the run."""
    store = targets.store
    environ = targets.environ if environ is None else environ
    from_run = None
    if run is not None:
        pf, from_run = _from_run(targets, Path(project), store, run, checkpoint)
    else:
        # A store inside the project must not pack itself: each build would carry the one before.
        pf = load_packfile(find_packfile(Path(project)), skip=(store.root,))
    builder = builder or pf.serving.builder
    signing = None
    if key is not None:
        from modelpack.trust.keys import load_private

        if not image:
            raise UsageError("--key signs the release's provenance: it needs --image")
        signing = load_private(key, env=environ, password=password)
    if builder not in BUILDERS:
        raise UsageError(f"unknown builder {builder!r}", hint=f"use one of: {', '.join(BUILDERS)}")
    if image and pf.serving.system_packages and builder != "docker":
        raise UsageError(
            f"{pf.path}: serving.system_packages needs the Docker builder", hint="build with --builder docker"
        )
    # writing() checks the folder first: one that is not a store is refused before the stat cache is made
    with store.writing(), StatCache(store.stat_cache_path) as cache:
        published = _published(pf, cache, targets)
        bundle = build_bundle(
            pf, store, cache, version=version, git=git_info(pf.root), environ=environ, published=published,
            from_run=from_run, allow_version_mismatch=allow_version_mismatch,
        )  # fmt: skip
        if not image:
            return BuildResult(bundle=bundle, image=None, index=None, tag=bundle.tag)
        base_ref = base_reference(pf, base, environ)
        where = targets.open_base(base_ref)
        try:
            base_image = resolve_base(where.target, where.ref or "latest", base_ref)
        except RegistryError as e:
            if isinstance(e, AuthError):
                raise
            # An image `docker images` lists is not where modelpack looks: say so, with the way out.
            raise type(e)(
                f"base image {base_ref}: {e.message}",
                hint="base images are read from a registry, never from the local Docker engine: push it to "
                f"one this machine reaches (docker tag {base_ref} HOST/{base_ref.rsplit('/', 1)[-1]}; "
                f"docker push HOST/...) and pass --base HOST/... or set {BASE_ENV}",
            ) from None
        platform = wheels.TargetPlatform(python=pf.dependencies.python)
        request = ImageRequest(
            bundle=bundle,
            base=base_image,
            user_pins=bundle.lock.pins(target_environment(platform)),
            target=platform,
            port=pf.serving.port,
            env=dict(pf.serving.env),
            system_packages=pf.serving.system_packages,
        )
        if builder == "docker":
            from modelpack.image.docker_builder import build_with_docker  # needs the docker SDK

            # an engine without a default bridge (like the test engine) needs "host" for apt-get
            network = environ.get(DOCKER_NETWORK_ENV) or None
            img = build_with_docker(store, request, client=docker, log=log, network_mode=network)
        else:
            img = build_image(store, cache, request)
        # the release's record lists the runtime's packages too, so `diff` shows them change
        record = dataclasses.replace(bundle.record, runtime=dict(img.runtime_packages))
        index = release_index(img.manifest, bundle.manifest, record)
        # still under the writer lock: no gc between the image's manifest and the tag that reaches it
        stored = store.put_document(index, tag=bundle.tag)
        asked = {"version": bundle.version, "base": base_ref}
        inputs = BuildInputs(base_image.name, base_image.digest, builder, asked)
        attestations = attest(store, stored, bundle, img, request, inputs, environ, signing)
    return BuildResult(bundle=bundle, image=img, index=stored, tag=bundle.tag, attestations=attestations)


def _published(pf: Packfile, cache: StatCache, targets: Targets) -> dict[str, PublishedDataset]:
    """The packfile's dataset `ref:`s, resolved in their registries (none: no registry is asked)."""
    if not any(d.ref for d in pf.datasets):
        return {}
    from modelpack.dataset.published import resolve_refs

    return resolve_refs(targets, pf.datasets, hash_file=cache.file_digest)


def _from_run(
    targets: Targets, project: Path, store: LayoutStore, run: str, checkpoint: str | None
) -> tuple[Packfile, FromRun]:
    """`build --run`: the run's checkpoint written back into the project (so the packfile finds its model
    files), then what the record takes from the run; the packfile keeps the datasets the run did not read."""
    from modelpack.api._runs import open_run
    from modelpack.runs import release

    packfile = find_packfile(project)
    place, view = open_run(targets, run)
    chosen = release.choose_checkpoint(view, checkpoint)
    release.restore_checkpoint(place.target, view, chosen, packfile.parent)
    pf = load_packfile(packfile, skip=(store.root,))
    taken, left = release.inputs(targets, place.target, view, place.display, chosen, pf.datasets)
    return dataclasses.replace(pf, datasets=left), taken
