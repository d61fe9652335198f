"""The Docker builder: the serving image built by a Docker engine from `templates/Dockerfile.j2`, for
projects that need system packages (apt-get) in the image.

It makes the same image as the daemonless builder, layer for layer: base, system packages, deps,
runtime, the bundle's weights and code layers, serving.json; the same Env, Cmd, User, labels and
healthcheck (both come from image/config.py). Every input is in the build context, streamed to the engine
as one tar made on the fly (no copy of the weights on disk): the Dockerfile, the wheels downloaded on the
host, the runtime sources, the bundle's own layer blobs (ADD unpacks them) and serving.json. With no
system packages the build runs with its network disabled, so nothing inside it can fetch anything.
The built image is then saved from the engine into the local store (image/export.py) with the base's
layers referenced as the daemonless builder references them, the layers before the bundle's (system
packages, deps, runtime) gzip-compressed as the daemonless builder compresses its own, and pushed by
modelpack's own client.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

import modelpack
from modelpack import templates
from modelpack.bundle.build import BundleResult
from modelpack.errors import BuildError
from modelpack.image import wheels
from modelpack.image.base import BaseImage
from modelpack.image.build import (
    ImageResult,
    image_pins,
    lock_name,
    release_labels,
    serving_json,
)
from modelpack.image.config import DEPS_DIR, RUNTIME_DIR, SECOND, SERVING_CONFIG, RunSettings, image_config
from modelpack.image.export import import_docker_archive
from modelpack.image.request import ImageRequest
from modelpack.image.runtime import runtime_entries
from modelpack.image.wheels import select_wheels
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, Platform
from modelpack.oci.tar import TarEntry, tar_chunks, with_parents
from modelpack.registry.reference import parse_reference
from modelpack.store.layout import LayoutStore

LogFn = Callable[[str], None]
DOCKERFILE = "Dockerfile.j2"
# Build backends for source distributions, fetched only when a pin has no wheel: pinned, so an sdist
# builds the same way every time, offline inside the engine. Complete on their own (wheel needs packaging):
# the runtime's lock no longer brings packaging into every image's wheels.
BUILD_TOOLS = {"setuptools": "84.2.1", "wheel": "0.48.0", "packaging": "26.4"}
_TAG_PART = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def no_log(_line: str) -> None:
    return None


@dataclass(frozen=True)
class ContextLayer:
    path: str  # in the build context
    title: str  # a comment in the Dockerfile


def _dq(value: object) -> str:
    """A double-quoted Dockerfile word: ENV and LABEL expand `$` and read backslash escapes."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise BuildError(f"{text[:40]!r}...: a value with a line break cannot go in a Dockerfile")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def render_dockerfile(values: Mapping[str, Any]) -> str:
    """templates/Dockerfile.j2, found and rendered (strictly) as every modelpack template is."""
    return templates.render(DOCKERFILE, **values)


def _seconds(ns: int) -> str:
    return f"{ns // SECOND}s"


def dockerfile_values(
    bundle: BundleResult,
    base: BaseImage,
    config: Mapping[str, Any],
    layers: Sequence[ContextLayer],
    *,
    pip_wheel: str,
    port: int,
    system_packages: Sequence[str],
) -> dict[str, Any]:
    """What the template needs; run settings are read from the daemonless builder's config, so the two
    builders cannot drift apart."""
    ref = parse_reference(base.name)
    if ref.is_layout:
        raise BuildError(f"the Docker builder cannot build FROM {base.name}", hint="use a registry reference")
    inner = config["config"]
    health = inner["Healthcheck"]
    env = [item.partition("=") for item in inner["Env"]]
    return {
        "name": bundle.name,
        "version": bundle.version,
        "modelpack_version": modelpack.__version__,
        # pinned to the digest the daemonless path resolved: the engine builds on exactly that image
        "base": f"{ref.name}@{base.digest}",
        "system_packages": list(system_packages),
        "pip_wheel": pip_wheel,
        "deps_dir": DEPS_DIR,
        "runtime_dir": RUNTIME_DIR,
        "serving_config": SERVING_CONFIG,
        "layers": list(layers),
        # ENV and LABEL words, quoted here: the template only places them
        "env": [(k, _dq(v)) for k, _, v in env],
        "labels": [(_dq(k), _dq(v)) for k, v in sorted((inner.get("Labels") or {}).items())],
        "port": port,
        "workdir": inner["WorkingDir"],
        "user": inner["User"],
        "cmd": inner["Cmd"],
        "healthcheck": {
            "test": health["Test"][1:],  # after "CMD"
            "interval": _seconds(health["Interval"]),
            "timeout": _seconds(health["Timeout"]),
            "start_period": _seconds(health["StartPeriod"]),
            "retries": health["Retries"],
        },
    }


def fetch_distributions(
    pins: Mapping[str, str], dest: Path, target: wheels.TargetPlatform, run: wheels.Runner = wheels.run_pip
) -> tuple[dict[str, str], dict[str, str]]:
    """Download on the host what the engine installs offline: the target's binary wheel of every pin that
    has one; for those that have none, the source distribution, plus pinned build tools to build it
    inside the engine. Returns (pins fetched as wheels, pins fetched as sources)."""
    binary = dict(pins)
    sources: dict[str, str] = {}
    for _ in range(len(pins) + 1):
        try:
            wheels.download_wheels(wheels.requirements_text(binary), dest, target, run)
            break
        except wheels.NoWheelError as e:
            name = canonicalize_name(re.split(r"[=<>!~\[;@ ]", e.package, maxsplit=1)[0])
            key = next((k for k in binary if canonicalize_name(k) == name and k not in BUILD_TOOLS), None)
            if key is None:
                raise
            sources[key] = binary.pop(key)
            binary = {**BUILD_TOOLS, **binary}
    if sources:
        args = [
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-d",
            str(dest),
        ]
        result = run([*args, *(f"{k}=={v}" for k, v in sorted(sources.items()))])
        if result.returncode != 0:
            lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
            raise BuildError(
                f"no wheel and no source of {', '.join(sorted(sources))}: "
                f"{lines[-1].strip() if lines else 'pip gave no output'}"
            )
    return binary, sources


def _pip_version(pins: Mapping[str, str]) -> str:
    return pins.get("pip") or importlib.metadata.version("pip")


def context_entries(
    store: LayoutStore,
    dockerfile: str,
    requirements: str,
    wheel_files: Sequence[Path],
    bundle_layers: Sequence[Descriptor],
    serving: bytes,
) -> list[TarEntry]:
    runtime_prefix = RUNTIME_DIR.lstrip("/") + "/"
    entries = [
        TarEntry.from_bytes("Dockerfile", dockerfile.encode()),
        TarEntry.from_bytes("wheels/requirements.txt", requirements.encode()),
        *(TarEntry.from_file(p, f"wheels/{p.name}") for p in wheel_files),
        *(
            TarEntry(f"runtime/{e.arcname.removeprefix(runtime_prefix)}", e.kind, e.source, e.size, e.mode)
            for e in runtime_entries()
            if e.arcname.startswith(runtime_prefix)
        ),
        *(
            TarEntry.from_file(store.blob_file(d.digest), f"layers/{i}.tar")
            for i, d in enumerate(bundle_layers, 1)
        ),
        TarEntry.from_bytes("serving.json", serving),
    ]
    return with_parents(entries)


def run_build(
    client: Any, context: Iterator[bytes], *, tag: str | None, network_mode: str | None, log: LogFn
) -> str:
    """Build on the engine, streaming its output to `log`; returns the image ID."""
    image_id: str | None = None
    try:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode=network_mode,
            decode=True,
        )
        for event in stream:
            if "stream" in event:
                for line in str(event["stream"]).splitlines():
                    if line.strip():
                        log(line)
            if "error" in event:
                raise BuildError(f"docker build failed: {str(event['error']).strip()}")
            aux = event.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except BuildError:
        raise
    except Exception as e:  # the SDK raises its own errors and requests' ones; both mean the same to a user
        raise BuildError(f"docker build failed: {type(e).__name__}: {e}") from None
    if image_id is None:
        raise BuildError("docker build finished without naming the image it built")
    return image_id


def _engine_tag(bundle: BundleResult) -> str | None:
    """`modelpack/NAME:VERSION` in the engine, so `docker run` works locally; none if docker refuses it."""
    ok = _TAG_PART.match(bundle.name) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", bundle.version)
    return f"modelpack/{bundle.name}:{bundle.version}" if ok else None


def docker_client() -> Any:
    import docker  # the SDK is only needed by this builder

    try:
        # "auto": the engine may speak an older API than the SDK's default
        return docker.from_env(version="auto", timeout=900)
    except Exception as e:
        raise BuildError(
            f"no Docker engine answers ({type(e).__name__}: {e})",
            hint="start Docker or set DOCKER_HOST; or build with the daemonless builder",
        ) from None


def build_with_docker(
    store: LayoutStore,
    request: ImageRequest,
    *,
    client: Any = None,
    log: LogFn = no_log,
    network_mode: str | None = None,
    run: wheels.Runner = wheels.run_pip,
) -> ImageResult:
    """Build the serving image with a Docker engine; store it as an OCI image manifest in `store`.

    `network_mode` defaults to "none" when there are no system packages (the build is hermetic), else to
    the engine's default network."""
    bundle, base, target, port = request.bundle, request.base, request.target, request.port
    system_packages = request.system_packages
    pins, runtime_packages = image_pins(request)
    requirements = wheels.requirements_text(pins)
    pip_version = _pip_version(pins)
    wheel_dir = store.root / "cache" / "wheels"
    binary, sources = fetch_distributions({**pins, "pip": pip_version}, wheel_dir, target, run)
    wheels.check_complete(wheel_dir, pins, target, lock=lock_name(bundle))
    if sources:  # pip builds the sdists in isolation from these wheels alone
        tools = {k: binary[k] for k in BUILD_TOOLS if k in binary}
        wheels.check_complete(wheel_dir, tools, target, lock="the sdist build tools")
    files = select_wheels(wheel_dir, binary, sources)
    pip_wheel = next((p.name for p in files if p.name.startswith(f"pip-{pip_version}-")), None)
    if pip_wheel is None:
        raise BuildError(f"pip {pip_version} was downloaded but no wheel of it is in {wheel_dir}")

    created = bundle.record.created
    settings = RunSettings(port=port, env=dict(request.env), labels=release_labels(bundle))
    config = image_config(base.config, [], settings, created=created, arch=target.oci_arch)
    bundle_layers = [d for d in bundle.layers if d.media_type in mt.SERVED_LAYERS]
    layers = [
        ContextLayer(f"layers/{i}.tar", f"bundle layer {d.digest[7:19]} ({d.media_type.rsplit('.', 2)[-2]})")
        for i, d in enumerate(bundle_layers, 1)
    ]
    values = dockerfile_values(
        bundle, base, config, layers, pip_wheel=pip_wheel, port=port, system_packages=system_packages
    )
    dockerfile = render_dockerfile(values)
    entries = context_entries(
        store, dockerfile, requirements, files, bundle_layers, serving_json(bundle, port)
    )
    mode = network_mode if network_mode is not None else (None if system_packages else "none")
    client = client if client is not None else docker_client()
    image_id = run_build(client, tar_chunks(entries), tag=_engine_tag(bundle), network_mode=mode, log=log)

    base_ids = list((base.config.get("rootfs") or {}).get("diff_ids") or [])
    nbase = len(base.layers)
    # the template's layers after the base: [system packages], deps, runtime (compressed), then the
    # bundle's layers and serving.json (kept as tars)
    first_bundle = nbase + (1 if system_packages else 0) + 2
    try:
        exported = import_docker_archive(
            client.api.get_image(image_id),
            store,
            keep=lambda i, _d: i >= nbase,
            compress=lambda i: i < first_bundle,
        )
    except BuildError:
        raise
    except Exception as e:
        raise BuildError(f"saving the built image from the engine failed: {type(e).__name__}: {e}") from None
    if [d.digest for d in exported.layers[:nbase]] != base_ids[:nbase] or len(base_ids) != nbase:
        raise BuildError(f"the engine's image does not start with the layers of {base.name}@{base.digest}")
    ours = exported.layers[nbase:]
    manifest = Manifest(
        config=exported.config,
        layers=(*base.layers, *ours),
        annotations={mt.ANN_BASE_NAME: base.name, mt.ANN_BASE_DIGEST: base.digest, mt.ANN_CREATED: created},
    )
    stored = store.put_document(manifest)
    cfg = exported.config_json
    platform = Platform(architecture=str(cfg.get("architecture")), os=str(cfg.get("os")))
    return ImageResult(
        manifest=Descriptor(stored.media_type, stored.digest, stored.size, platform=platform),
        config=exported.config,
        layers=tuple(ours),
        base=base,
        deps_layer_reused=False,
        runtime_packages=runtime_packages,
    )
