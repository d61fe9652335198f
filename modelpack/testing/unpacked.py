"""A release's files on disk for the local runtime, cached in the store and reused across runs.

- the bundle's weights and code: STORE/cache/releases/<bundle hex>/{models,code}
- the image's own deps and runtime layers: STORE/cache/layers/<layer hex>/opt/modelpack/{deps,runtime}

Both are keyed by content digests, so a cache entry never goes stale. Each is extracted into a temporary
folder beside its final name and renamed into place only when every blob verified, so a reader (or a
second `modelpack test` running in parallel) never sees half an entry.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelpack.image.config import DEPS_DIR, RUNTIME_DIR
from modelpack.image.gzlayer import gunzip, is_gzip
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.target import Target
from modelpack.oci.tarread import ChunkReader
from modelpack.oci.untar import Refuse, bundle_path, safe_extract, vcs_path
from modelpack.release.view import ReleaseView

# Bundle layers the runtime reads (docs and datasets are not needed to serve).
_DEPS = DEPS_DIR.strip("/")
_RUNTIME = RUNTIME_DIR.strip("/")
_PARENTS = {"opt", "opt/modelpack"}
# Image Env entries that name paths inside the image or are set per run: never copied to a local process.
_IMAGE_ONLY_ENV = frozenset(
    {"PATH", "HOME", "PYTHONPATH", "PYTHONHOME", "MODELPACK_SERVING_CONFIG", "PORT", "HOST", "WORKERS"}
)


@dataclass(frozen=True)
class ReleaseFiles:
    root: Path  # holds models/ and code/

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def code(self) -> Path:
        return self.root / "code"


@dataclass(frozen=True)
class ImageRuntime:
    deps: Path  # the image's pinned packages (pip --target tree)
    runtime: Path | None  # the image's copy of modelpack.serve; None: use the installed one
    deps_layer: str  # digest
    env: Mapping[str, str] = field(default_factory=dict)  # the image's Env a local process should see too


def release_files(
    target: Target, release: ReleaseView, cache_root: Path, *, code_only: bool = False
) -> ReleaseFiles:
    """The bundle's weights and code, unpacked once per bundle digest. `code_only` skips the weights
    (the Docker runtime needs only the cases file, and weights can be gigabytes)."""
    assert release.bundle_manifest is not None  # load_release(layers=True) reads it
    kinds = frozenset({mt.MODEL_CODE_TAR}) if code_only else mt.SERVED_LAYERS
    layers = [d for d in release.bundle_manifest.layers if d.media_type in kinds]
    hexdigest = release.bundle.digest.split(":", 1)[1]
    final = cache_root / "releases" / (f"{hexdigest}.code" if code_only else hexdigest)
    _materialize(target, layers, final, refuse=bundle_path)
    for sub in ("models", "code"):
        (final / sub).mkdir(exist_ok=True)  # a release may have no code of its own
    return ReleaseFiles(final)


def image_runtime(target: Target, release: ReleaseView, cache_root: Path) -> ImageRuntime | None:
    """The serving image's deps (and runtime) layers, unpacked once per layer digest; None when the
    release has no image or its deps layer cannot be found."""
    image = release.image_manifest(target)
    if image is None:
        return None
    bundle_blobs = {d.digest for d in release.bundle_manifest.layers} if release.bundle_manifest else set()
    deps: Descriptor | None = None
    runtime: Descriptor | None = None
    for desc in image.layers:
        if desc.digest in bundle_blobs or not target.has_blob(desc.digest):
            continue  # weights/code are the bundle's; base layers are referenced, not stored locally
        kind = layer_kind(target, desc)
        if kind == "deps" and deps is None:
            deps = desc
        elif kind == "runtime" and runtime is None:
            runtime = desc
        if deps is not None and runtime is not None:
            break
    if deps is None:
        return None
    deps_root = cache_root / "layers" / deps.digest.split(":", 1)[1]
    _materialize(target, [deps], deps_root)
    runtime_path: Path | None = None
    if runtime is not None:
        runtime_root = cache_root / "layers" / runtime.digest.split(":", 1)[1]
        _materialize(target, [runtime], runtime_root)
        runtime_path = runtime_root / _RUNTIME
    return ImageRuntime(
        deps=deps_root / _DEPS, runtime=runtime_path, deps_layer=deps.digest, env=_image_env(target, image)
    )


def _image_env(target: Target, image: Manifest) -> dict[str, str]:
    """The image config's Env (serving.env from modelpack.yaml among it), minus what names image paths."""
    with target.read_blob(image.config) as chunks:
        data = b"".join(chunks)
    try:
        raw = canonical.loads(data).get("config", {}).get("Env") or []
    except (ValueError, AttributeError):
        return {}
    env: dict[str, str] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        if sep and key not in _IMAGE_ONLY_ENV:
            env[key] = value
    return env


def layer_kind(target: Target, desc: Descriptor) -> str | None:
    """Which of "deps" or "runtime" the layer is, from its first entry below opt/modelpack/; reads only
    the first few headers (a deps layer is hundreds of MB)."""
    if not (desc.media_type.startswith(mt.OCI_LAYER_TAR) or "docker.image.rootfs" in desc.media_type):
        return None
    with target.read_blob(desc) as chunks:
        try:
            with tarfile.open(fileobj=ChunkReader(chunks), mode="r|*") as tf:  # type: ignore[call-overload]
                for member in tf:
                    name = member.name.removeprefix("./").strip("/")
                    if name in _PARENTS:
                        continue
                    if name == _DEPS or name.startswith(_DEPS + "/"):
                        return "deps"
                    if name == _RUNTIME or name.startswith(_RUNTIME + "/"):
                        return "runtime"
                    return None
        except (tarfile.TarError, OSError, EOFError):
            return None
    return None


def _materialize(
    target: Target, layers: Sequence[Descriptor], final: Path, refuse: Refuse = vcs_path
) -> None:
    if final.is_dir():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        for desc in layers:
            with target.read_blob(desc) as chunks:
                # the image's deps and runtime layers are gzip-compressed; the bundle's are plain tars
                it = gunzip(chunks) if is_gzip(desc) else iter(chunks)
                safe_extract(it, staging, force=True, refuse=refuse)
                for _ in it:  # past the end-of-archive marker, so the digest check runs
                    pass
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():  # not a lost race with another run: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
