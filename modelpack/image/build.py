"""The daemonless serving-image builder: base layers (referenced, never pulled), deps, runtime, weights,
code, and a one-file serving layer, assembled as an OCI image manifest in the local store.

Layer order follows how often each changes, so a rebuild re-uploads only what moved: deps change with the
lockfile, the runtime with modelpack, weights with training, code with every commit. The weights and code
layers are the bundle's own blobs under the image layer media type: pushing the image after the bundle
moves no weight byte. The serving config (which names the bundle digest) is its own tiny last layer, so
a code change leaves the runtime layer untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import modelpack
from modelpack.bundle.build import BundleResult
from modelpack.bundle.layers import store_layer
from modelpack.bundle.plan import LayerPlan
from modelpack.image import wheels
from modelpack.image.base import BaseImage
from modelpack.image.config import (
    DEPS_DIR,
    RUNTIME_DIR,
    SERVING_CONFIG,
    LayerInfo,
    RunSettings,
    image_config,
)
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.layout import LayoutStore
from modelpack.oci.model import Descriptor, Manifest, Platform
from modelpack.oci.statcache import StatCache
from modelpack.oci.tar import TarEntry, entries_from

ANN_BASE_NAME = "org.opencontainers.image.base.name"
ANN_BASE_DIGEST = "org.opencontainers.image.base.digest"
# Bundle layers that belong in the image's filesystem (docs and datasets stay in the bundle only).


@dataclass(frozen=True)
class ImageResult:
    manifest: Descriptor  # with its platform, ready for the release index
    config: Descriptor
    layers: tuple[Descriptor, ...]  # ours only, in order (deps, runtime, weights..., code, serving)
    base: BaseImage
    deps_layer_reused: bool


def runtime_entries(package_root: Path | None = None) -> list[TarEntry]:
    """modelpack/__init__.py and modelpack/serve/**.py: the runtime imports nothing else of modelpack."""
    root = package_root or Path(modelpack.__file__).parent
    files = [(root / "__init__.py", f"{RUNTIME_DIR.lstrip('/')}/modelpack/__init__.py")]
    files += [
        (p, f"{RUNTIME_DIR.lstrip('/')}/modelpack/serve/{p.relative_to(root / 'serve').as_posix()}")
        for p in sorted((root / "serve").rglob("*"))
        if p.is_file() and (p.suffix == ".py" or p.name == "requirements.lock")
    ]
    return entries_from(files)


def runtime_pins(package_root: Path | None = None) -> dict[str, str]:
    root = package_root or Path(modelpack.__file__).parent
    pins: dict[str, str] = {}
    for line in (root / "serve" / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def deps_layer(
    store: LayoutStore,
    cache: StatCache,
    requirements: str,
    target: wheels.TargetPlatform,
    run: wheels.Runner = wheels.run_pip,
) -> tuple[Descriptor, Path, bool]:
    """The deps layer for these pins; (descriptor, unpacked tree, reused from cache)."""
    key = wheels.deps_key(requirements, target)
    tree = store.root / "cache" / "deps" / key
    hit = cache.get(["deps-layer", key])
    if isinstance(hit, list) and store.has_blob(str(hit[0])) and tree.is_dir():
        return Descriptor(mt.OCI_LAYER_TAR, str(hit[0]), int(hit[1])), tree, True
    wheel_dir = store.root / "cache" / "wheels"
    wheels.download_wheels(requirements, wheel_dir, target, run)
    wheels.install_tree(wheel_dir, requirements, tree, target, run)
    plan = LayerPlan(mt.OCI_LAYER_TAR, tuple(entries_from([(tree, DEPS_DIR.lstrip("/"))])), DEPS_DIR)
    stored = store_layer(store, cache, plan, 0)
    cache.put(["deps-layer", key], [stored.descriptor.digest, stored.descriptor.size])
    return Descriptor(mt.OCI_LAYER_TAR, stored.descriptor.digest, stored.descriptor.size), tree, False


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
    bundle: BundleResult,
    base: BaseImage,
    *,
    user_pins: Mapping[str, str],
    target: wheels.TargetPlatform = wheels.TargetPlatform(),
    port: int = 8080,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    run: wheels.Runner = wheels.run_pip,
) -> ImageResult:
    requirements = wheels.requirements_text(wheels.merge_requirements(dict(user_pins), runtime_pins()))
    deps, _tree, reused = deps_layer(store, cache, requirements, target, run)
    runtime = store_layer(store, cache, LayerPlan(mt.OCI_LAYER_TAR, tuple(runtime_entries()), RUNTIME_DIR), 0)
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
    ours = [
        deps,
        Descriptor(mt.OCI_LAYER_TAR, runtime.descriptor.digest, runtime.descriptor.size),
        *bundle_layers,
        Descriptor(mt.OCI_LAYER_TAR, serving.descriptor.digest, serving.descriptor.size),
    ]
    created_by = ["modelpack: deps (wheels from the lockfile)", "modelpack: serving runtime"]
    created_by += [f"modelpack: bundle layer {d.digest[7:19]}" for d in bundle_layers]
    created_by.append("modelpack: serving config")
    all_labels = release_labels(bundle, labels)
    cfg = image_config(
        base.config,
        [LayerInfo(d.digest, by) for d, by in zip(ours, created_by, strict=True)],
        RunSettings(port=port, env=dict(env or {}), labels=all_labels),
        created=bundle.record.created,
        arch=target.oci_arch,
    )
    config_desc = store.put_blob_bytes(canonical.dumps(cfg), mt.OCI_CONFIG)
    manifest = Manifest(
        config=config_desc,
        layers=(*base.layers, *ours),
        annotations={
            ANN_BASE_NAME: base.name,
            ANN_BASE_DIGEST: base.digest,
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
    )

