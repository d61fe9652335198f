"""A release as `inspect`, `diff`, `ls` and `unpack` see it, read from manifests alone (never a blob).

A release tag names either a bare bundle manifest (what `modelpack build` writes) or an image index whose
children are the serving image and the bundle. The record rides in an annotation on both, so `ls` answers
from one manifest GET per version; `inspect` and `unpack` also need the bundle's layer list, which costs
one more GET when the tag names an index.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpack.errors import ContentError, ModelpackError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index, Manifest, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.record.record import Record


class NotAReleaseError(ContentError):
    """The reference names something that is not a modelpack release (an ordinary image, a referrer index)."""


@dataclass(frozen=True)
class LayerInfo:
    kind: str  # a mediatypes.LAYER_KINDS name, or "other"
    media_type: str
    digest: str
    size: int
    filepath: str | None  # the org.cncf.model.filepath annotation

    @classmethod
    def of(cls, desc: Descriptor) -> LayerInfo:
        return cls(
            kind=kind.name if (kind := mt.LAYER_KINDS.get(desc.media_type)) else "other",
            media_type=desc.media_type,
            digest=desc.digest,
            size=desc.size,
            filepath=desc.annotations.get(mt.ANN_FILEPATH),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "filepath": self.filepath,
        }


@dataclass(frozen=True)
class ReleaseView:
    digest: str  # of what the reference names: the index, or the bundle manifest itself
    media_type: str
    is_index: bool
    record: Record
    bundle: Descriptor  # the bundle manifest's descriptor
    bundle_manifest: Manifest | None  # None when only the record was asked for and the index carried it
    image: Descriptor | None = None  # the serving image's manifest, when the release is an index
    annotations: Mapping[str, str] = field(default_factory=dict)  # of the root (index or manifest)

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        if self.bundle_manifest is None:
            return ()
        return tuple(LayerInfo.of(d) for d in self.bundle_manifest.layers)

    @property
    def total_size(self) -> int | None:
        """Bytes of the bundle: its manifest, config and layers (None when its manifest was not read)."""
        m = self.bundle_manifest
        if m is None:
            return None
        return self.bundle.size + m.config.size + sum(d.size for d in m.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "mediaType": self.media_type,
            "isIndex": self.is_index,
            "bundle": self.bundle.to_json(),
            "image": self.image.to_json() if self.image is not None else None,
            "annotations": {k: v for k, v in self.annotations.items() if k != mt.ANN_RECORD},
            "config": self.bundle_manifest.config.to_json() if self.bundle_manifest is not None else None,
            "layers": [layer.to_json() for layer in self.layers],
            "totalSize": self.total_size,
            "record": self.record.to_json(),
        }

    def image_manifest(self, target: Target) -> Manifest | None:
        """The serving image's manifest read from `target`; None for a bundle-only release (or an image
        entry that is not a single manifest)."""
        if self.image is None:
            return None
        raw = target.get_manifest(self.image.digest)
        doc = parse(raw.raw, raw.media_type)
        return doc if isinstance(doc, Manifest) else None


def load_release(target: Target, ref: str, *, layers: bool = True, where: str | None = None) -> ReleaseView:
    """The release `ref` (tag or digest) of `target`. One manifest GET when the tag names a bundle, or an
    index carrying the record and `layers` is False; otherwise one more for the bundle manifest.
    `where` names the release in messages (default: target and ref)."""
    return release_from_manifest(
        target.get_manifest(ref), target.get_manifest, layers=layers, where=where or _where(target, ref)
    )


def release_from_manifest(
    root: RawManifest,
    fetch: Callable[[str], RawManifest],
    *,
    layers: bool = True,
    where: str = "the manifest",
) -> ReleaseView:
    """Read a release from the bytes its reference names; `fetch(digest)` gets a child manifest."""
    doc = parse(root.raw, root.media_type)
    if isinstance(doc, Manifest):
        return ReleaseView(
            digest=root.digest,
            media_type=root.media_type,
            is_index=False,
            record=_record(doc, where),
            bundle=Descriptor(root.media_type, root.digest, len(root.raw), artifact_type=doc.artifact_type),
            bundle_manifest=doc,
            annotations=doc.annotations,
        )
    bundle_desc = _bundle_child(doc, where)
    image = next((d for d in doc.manifests if d is not bundle_desc and _is_image(d)), None)
    bundle: Manifest | None = None
    if layers or mt.ANN_RECORD not in doc.annotations:
        child = fetch(bundle_desc.digest)
        parsed = parse(child.raw, child.media_type)
        if not isinstance(parsed, Manifest):
            raise NotAReleaseError(f"{where}: the bundle entry {bundle_desc.digest} is not a manifest")
        bundle = parsed
    record = _record(doc, where) if mt.ANN_RECORD in doc.annotations else _record(_need(bundle), where)
    return ReleaseView(
        digest=root.digest,
        media_type=root.media_type,
        is_index=True,
        record=record,
        bundle=bundle_desc,
        bundle_manifest=bundle,
        image=image,
        annotations=doc.annotations,
    )


def is_bundle(doc: Manifest) -> bool:
    return doc.artifact_type == mt.MODEL_ARTIFACT or doc.config.media_type == mt.MODEL_CONFIG


def _record(doc: Manifest | Index, where: str) -> Record:
    if isinstance(doc, Manifest) and not is_bundle(doc):
        raise NotAReleaseError(f"{where} is not a modelpack release (not a model bundle manifest)")
    text = doc.annotations.get(mt.ANN_RECORD)
    if text is None:
        raise NotAReleaseError(
            f"{where} has no {mt.ANN_RECORD} annotation: not built by modelpack",
            hint="inspect reads modelpack releases; use skopeo or crane for other artifacts",
        )
    try:
        return Record.from_bytes(text)
    except ContentError as e:
        raise NotAReleaseError(f"{where}: {e.message}") from None


def _bundle_child(index: Index, where: str) -> Descriptor:
    for d in index.manifests:
        if d.artifact_type == mt.MODEL_ARTIFACT:
            return d
    raise NotAReleaseError(f"{where} is an index with no model bundle ({mt.MODEL_ARTIFACT}) in it")


def _is_image(d: Descriptor) -> bool:
    return d.media_type in mt.MANIFEST_TYPES and (d.platform is None or d.platform.os != "unknown")


def _need(bundle: Manifest | None) -> Manifest:
    assert bundle is not None  # fetched above whenever the index carries no record
    return bundle


def _where(target: Target, ref: str) -> str:
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"{target.describe()}{sep}{ref}"


def release_version(raw: RawManifest) -> str | None:
    """The version a release index (or bare bundle manifest) says it is; None when it says none or its
    bytes are not a manifest."""
    try:
        return parse(raw.raw, raw.media_type).annotations.get(mt.ANN_VERSION)
    except ModelpackError:
        return None
