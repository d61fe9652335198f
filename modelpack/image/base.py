"""The base image, read by reference from its registry (or layout) and never pulled.

Only its manifest and config are fetched: the config is extended with our layers, the manifest's layer
descriptors are listed as they are. On push the base's blobs are mounted (same registry) or streamed from
the base's registry; they never land in the local store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpack.errors import BuildError, InputError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index, Manifest, parse
from modelpack.oci.target import Target

MAX_CONFIG = 4 * 1024 * 1024

# Docker v2 layer types map to their OCI twins: the blob bytes are identical, so the digests are too.
_OCI_LAYER_TYPES = {
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER_TAR: mt.OCI_LAYER_TAR,
}


@dataclass(frozen=True)
class BaseImage:
    name: str  # the reference as given, e.g. "python:3.11-slim" or "127.0.0.1:5000/base/python:3.11"
    digest: str  # the platform image manifest's digest
    layers: tuple[Descriptor, ...]  # with OCI media types
    config: dict[str, Any]
    target: Target  # where the base's blobs live


def resolve_base(target: Target, ref: str, name: str, arch: str = "amd64") -> BaseImage:
    raw = target.get_manifest(ref)
    doc = parse(raw.raw, raw.media_type)
    digest = raw.digest
    if isinstance(doc, Index):
        wanted = [
            d
            for d in doc.manifests
            if d.platform is not None and d.platform.os == "linux" and d.platform.architecture == arch
        ]
        if not wanted:
            found = ", ".join(str(d.platform) for d in doc.manifests if d.platform) or "none"
            raise BuildError(f"base image {name} has no linux/{arch} image (it has: {found})")
        child = target.get_manifest(wanted[0].digest)
        doc = parse(child.raw, child.media_type)
        digest = child.digest
    if not isinstance(doc, Manifest) or doc.artifact_type is not None:
        raise InputError(f"base image {name} is not a container image")
    config = _read_json(target, doc.config, name)
    layers = tuple(
        Descriptor(_OCI_LAYER_TYPES.get(d.media_type, d.media_type), d.digest, d.size, urls=d.urls)
        for d in doc.layers
    )
    return BaseImage(name=name, digest=digest, layers=layers, config=config, target=target)


def _read_json(target: Target, desc: Descriptor, name: str) -> dict[str, Any]:
    if desc.size > MAX_CONFIG:
        raise BuildError(f"base image {name} has a {desc.size}-byte config; refused")
    with target.read_blob(desc) as chunks:
        data = b"".join(chunks)
    try:
        obj = canonical.loads(data)
    except ValueError:
        raise BuildError(f"base image {name} has a config that is not JSON") from None
    if not isinstance(obj, dict):
        raise BuildError(f"base image {name} has a config that is not a JSON object")
    return obj
