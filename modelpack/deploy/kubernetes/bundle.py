"""The deployment bundle: the rendered files as one OCI artifact, a referrer of the release it runs, tagged
`deploy-<env>` so Flux's OCIRepository (or Argo CD's OCI source) follows the tag and pins the digest.

One tar+gzip layer of Flux's content media type holding the files at their paths under the directory
(`base/...`, `overlays/<env>/...`); the tar is deterministic (oci.tar: sorted, mtime 0, root-owned) and
gzip has no name and mtime 0, so the same files give the same digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelpack.deploy.kubernetes.files import Tree
from modelpack.image.gzlayer import compress
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.tar import TarEntry, tar_chunks, with_parents
from modelpack.oci.target import RawManifest, Target

EMPTY_CONFIG = Descriptor.of(mt.OCI_EMPTY, mt.EMPTY_JSON)
MAX_BUNDLE = 4 * 1024 * 1024  # manifests are kilobytes; a reader refuses more


def tag_for(env: str) -> str:
    return f"deploy-{env}"


@dataclass(frozen=True)
class Pushed:
    tag: str
    digest: str  # of the bundle's manifest
    layer: Descriptor
    subject: str  # the release index it refers to


def layer_bytes(tree: Tree) -> bytes:
    entries = with_parents(TarEntry.from_bytes(rel, data) for rel, data in sorted(tree.items()))
    return b"".join(compress(tar_chunks(entries)))


def push(target: Target, tree: Tree, subject: Descriptor, env: str, annotations: Mapping[str, str]) -> Pushed:
    """Blobs, then the manifest, then the tag: a reader of the tag never finds a missing blob."""
    data = layer_bytes(tree)
    layer = Descriptor.of(mt.FLUX_CONTENT_TGZ, data)
    target.write_blob(EMPTY_CONFIG, [mt.EMPTY_JSON])
    target.write_blob(layer, [data])
    manifest = Manifest(
        config=EMPTY_CONFIG,
        layers=(layer,),
        artifact_type=mt.DEPLOYMENT_BUNDLE_ARTIFACT,
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        annotations=dict(annotations),
    )
    raw = RawManifest(manifest.to_bytes(), manifest.media_type, manifest.digest)
    target.put_manifest(manifest.digest, raw)
    tag = tag_for(env)
    target.put_manifest(tag, raw)
    return Pushed(tag, manifest.digest, layer, subject.digest)
