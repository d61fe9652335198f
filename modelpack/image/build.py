"""The daemonless serving-image builder: base layers (referenced, never pulled), deps, runtime, weights,
code, and a one-file serving layer, assembled as an OCI image manifest in the local store.

Layer order follows how often each changes, so a rebuild re-uploads only what moved: deps change with the
lockfile, the runtime with modelpack, weights with training, code with every commit. The weights and code
layers are the bundle's own blobs under the image layer media type: pushing the image after the bundle
moves no weight byte. The deps and runtime layers are gzip-compressed (image/gzlayer.py), deterministically;
the runtime's own packages are chosen by handler (image/runtime.py) and listed in the release's record.
The serving config (which names the bundle digest) is its own tiny last layer, so a code change leaves
the runtime layer untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelpack.bundle.build import BundleResult
from modelpack.bundle.layers import store_layer
from modelpack.bundle.plan import LayerPlan
from modelpack.image import wheels
from modelpack.image.base import BaseImage
from modelpack.image.config import (
    DEPS_DIR,
    SERVING_CONFIG,
    LayerInfo,
    RunSettings,
    image_config,
)
from modelpack.image.gzlayer import GzLayer, store_gzip_layer
from modelpack.image.request import ImageRequest
from modelpack.image.runtime import runtime_entries, runtime_pins
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, Platform
from modelpack.oci.tar import TarEntry, entries_from, tar_chunks
from modelpack.store.layout import LayoutStore
from modelpack.store.statcache import StatCache

# Bundle layers that belong in the image's filesystem (docs and datasets stay in the bundle only).


@dataclass(frozen=True)
class ImageResult:
    manifest: Descriptor  # with its platform, ready for the release index
    config: Descriptor
    layers: tuple[Descriptor, ...]  # ours only, in order (deps, runtime, weights..., code, serving)
    base: BaseImage
    deps_layer_reused: bool
    # the serving runtime's own pins for this handler (the user's lock wins where both pin a package)
    runtime_packages: Mapping[str, str] = field(default_factory=dict)


def image_pins(request: ImageRequest) -> tuple[dict[str, str], dict[str, str]]:
    """(what the deps layer installs, the runtime's own pins for the request's handler)."""
    runtime = runtime_pins(request.handler)
    return wheels.merge_requirements(dict(request.user_pins), runtime), runtime


def lock_name(bundle: BundleResult) -> str:
    return bundle.lock.path.name


def deps_layer(
    store: LayoutStore,
    cache: StatCache,
    pins: Mapping[str, str],
    target: wheels.TargetPlatform,
    run: wheels.Runner = wheels.run_pip,
    *,
    lock: str = "the lock",
) -> tuple[GzLayer, Path, bool]:
    """The deps layer for these pins; (compressed layer, unpacked tree, reused from cache)."""
    requirements = wheels.requirements_text(dict(pins))
    key = wheels.deps_key(requirements, target)
    tree = store.root / "cache" / "deps" / key
    hit = cache.get(["deps-layer-gz", key])
    if isinstance(hit, list) and len(hit) == 3 and store.has_blob(str(hit[0])) and tree.is_dir():
        return GzLayer(Descriptor(mt.OCI_LAYER_GZIP, str(hit[0]), int(hit[1])), str(hit[2])), tree, True
    wheel_dir = store.root / "cache" / "wheels"
    wheels.download_wheels(requirements, wheel_dir, target, run)
    wheels.check_complete(wheel_dir, pins, target, lock=lock)
    wheels.install_tree(wheel_dir, requirements, tree, target, run)
    layer = store_gzip_layer(store, tar_chunks(entries_from([(tree, DEPS_DIR.lstrip("/"))])))
    cache.put(["deps-layer-gz", key], [layer.descriptor.digest, layer.descriptor.size, layer.diff_id])
    return layer, tree, False


def serving_json(bundle: BundleResult, port: int) -> bytes:
    serving = bundle.record.serving
    model = serving.model if serving else None
    return canonical.dumps(
        {
            "name": bundle.name,
            "version": bundle.version,
            "handler": serving.handler if serving else "onnx",
            "model": model.removeprefix("models/") if model is not None else None,
            "model_dir": "/models",
            "code_dir": "/code",
            "bundle_digest": bundle.manifest.digest,
            "record_summary": {
                "metrics": {k: m.value for k, m in bundle.record.metrics.items()},
                "revision": bundle.record.git.commit if bundle.record.git else None,
                "created": bundle.record.created,
            },
            "port": port,
        }
    )


def release_labels(bundle: BundleResult, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The image's OCI labels (version, created, title, revision, source): shared with the Docker builder."""
    git = bundle.record.git
    return {
        mt.ANN_VERSION: bundle.version,
        mt.ANN_CREATED: bundle.record.created,
        mt.ANN_TITLE: bundle.name,
        **({mt.ANN_REVISION: git.commit} if git else {}),
        **({mt.ANN_SOURCE: git.remote} if git and git.remote else {}),
        **(extra or {}),
    }


def build_image(
    store: LayoutStore,
    cache: StatCache,
    request: ImageRequest,
    *,
    labels: Mapping[str, str] | None = None,
    run: wheels.Runner = wheels.run_pip,
) -> ImageResult:
    bundle, base, target, port = request.bundle, request.base, request.target, request.port
    pins, runtime_packages = image_pins(request)
    deps, _tree, reused = deps_layer(store, cache, pins, target, run, lock=lock_name(bundle))
    runtime = store_gzip_layer(store, tar_chunks(runtime_entries()))
    serving = store_layer(
        store,
        cache,
        LayerPlan(
            mt.OCI_LAYER_TAR,
            (TarEntry.from_bytes(SERVING_CONFIG.lstrip("/"), serving_json(bundle, port)),),
            SERVING_CONFIG,
        ),
        0,
    )
    served = [d for d in bundle.layers if d.media_type in mt.SERVED_LAYERS]
    bundle_layers = [Descriptor(mt.OCI_LAYER_TAR, d.digest, d.size) for d in served]
    serving_desc = Descriptor(mt.OCI_LAYER_TAR, serving.descriptor.digest, serving.descriptor.size)
    ours = [deps.descriptor, runtime.descriptor, *bundle_layers, serving_desc]
    # an uncompressed layer's diff ID is its digest; a compressed one's is its tar's
    diff_ids = [deps.diff_id, runtime.diff_id, *(d.digest for d in bundle_layers), serving_desc.digest]
    created_by = ["modelpack: deps (wheels from the lockfile)", "modelpack: serving runtime"]
    created_by += [f"modelpack: bundle layer {d.digest[7:19]}" for d in bundle_layers]
    created_by.append("modelpack: serving config")
    all_labels = release_labels(bundle, labels)
    cfg = image_config(
        base.config,
        [LayerInfo(d, by) for d, by in zip(diff_ids, created_by, strict=True)],
        RunSettings(port=port, env=dict(request.env), labels=all_labels),
        created=bundle.record.created,
        arch=target.oci_arch,
    )
    config_desc = store.put_blob_bytes(canonical.dumps(cfg), mt.OCI_CONFIG)
    manifest = Manifest(
        config=config_desc,
        layers=(*base.layers, *ours),
        annotations={
            mt.ANN_BASE_NAME: base.name,
            mt.ANN_BASE_DIGEST: base.digest,
            mt.ANN_CREATED: bundle.record.created,
        },
    )
    stored = store.put_document(manifest)
    platform = Platform(architecture=target.oci_arch, os="linux")
    return ImageResult(
        manifest=Descriptor(stored.media_type, stored.digest, stored.size, platform=platform),
        config=config_desc,
        layers=tuple(ours),
        base=base,
        deps_layer_reused=reused,
        runtime_packages=runtime_packages,
    )
