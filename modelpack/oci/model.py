"""Frozen OCI data types mirroring the image-spec JSON field for field.

Parsing keeps the raw bytes a registry or store gave us, because a manifest's identity is the digest of
its exact bytes: re-serialising a parsed manifest could change them (key order, whitespace), so a retag
or a copy always sends `raw` back unchanged. Objects we create serialise to canonical JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from modelpack.errors import ContentError
from modelpack.oci import canonical, digest, mediatypes

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution's own limit; a larger "manifest" is refused unread


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    variant: str | None = None
    features: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        if self.features:
            out["features"] = list(self.features)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        return cls(
            architecture=_str(obj, "architecture"),
            os=_str(obj, "os"),
            os_version=obj.get("os.version"),
            os_features=tuple(obj.get("os.features") or ()),
            variant=obj.get("variant"),
            features=tuple(obj.get("features") or ()),
        )

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    data: bytes | None = None

    def __post_init__(self) -> None:
        digest.validate(self.digest)
        if self.size < 0:
            raise ContentError(f"descriptor {self.digest} has a negative size")

    @classmethod
    def of(cls, media_type: str, content: bytes, **kw: Any) -> Descriptor:
        return cls(media_type=media_type, digest=digest.of_bytes(content), size=len(content), **kw)

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        return Descriptor(**{**self.__dict__, "annotations": dict(annotations)})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode("ascii")
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        if not isinstance(obj, Mapping):
            raise ContentError("descriptor is not a JSON object")
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise ContentError(f"descriptor size {size!r} is not an integer")
        data = obj.get("data")
        return cls(
            media_type=_str(obj, "mediaType"),
            digest=_str(obj, "digest"),
            size=size,
            annotations=_str_map(obj.get("annotations")),
            artifact_type=obj.get("artifactType"),
            platform=Platform.from_json(obj["platform"])
            if isinstance(obj.get("platform"), Mapping)
            else None,
            urls=tuple(obj.get("urls") or ()),
            data=base64.b64decode(data) if isinstance(data, str) else None,
        )


@dataclass(frozen=True)
class _Document:
    """What manifests and indexes share: raw bytes (when parsed), digest, media type."""

    raw: bytes | None = field(default=None, compare=False, repr=False, kw_only=True)

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        return self.raw if self.raw is not None else canonical.dumps(self.to_json())

    @property
    def digest(self) -> str:
        return digest.of_bytes(self.to_bytes())

    @property
    def size(self) -> int:
        return len(self.to_bytes())

    def replace(self, **changes: Any) -> Self:
        """A copy with fields changed; the copy serialises canonically (its raw bytes are dropped)."""
        values = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "raw"}
        values.update(changes)
        return type(self)(**values)

    def descriptor(self, **kw: Any) -> Descriptor:
        media_type = getattr(self, "media_type")  # noqa: B009 - declared by the subclasses, not here
        return Descriptor(media_type=media_type, digest=self.digest, size=self.size, **kw)


@dataclass(frozen=True)
class Manifest(_Document):
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = mediatypes.OCI_MANIFEST
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = 2

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [d.to_json() for d in self.layers],
        }
        return _with_optional(out, self.artifact_type, self.subject, self.annotations)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, raw: bytes | None = None) -> Manifest:
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise ContentError("manifest has no layers list")
        subject = obj.get("subject")
        return cls(
            schema_version=_schema_version(obj),
            media_type=obj.get("mediaType") or mediatypes.OCI_MANIFEST,
            config=Descriptor.from_json(obj.get("config")),
            layers=tuple(Descriptor.from_json(x) for x in layers),
            artifact_type=obj.get("artifactType"),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            annotations=_str_map(obj.get("annotations")),
            raw=raw,
        )


@dataclass(frozen=True)
class Index(_Document):
    manifests: tuple[Descriptor, ...]
    media_type: str = mediatypes.OCI_INDEX
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = 2

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "manifests": [d.to_json() for d in self.manifests],
        }
        return _with_optional(out, self.artifact_type, self.subject, self.annotations)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, raw: bytes | None = None) -> Index:
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise ContentError("index has no manifests list")
        subject = obj.get("subject")
        return cls(
            schema_version=_schema_version(obj),
            media_type=obj.get("mediaType") or mediatypes.OCI_INDEX,
            manifests=tuple(Descriptor.from_json(x) for x in manifests),
            artifact_type=obj.get("artifactType"),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            annotations=_str_map(obj.get("annotations")),
            raw=raw,
        )


def parse(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse manifest or index bytes, keeping them. `media_type` is the Content-Type, when one was given."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ContentError(
            f"manifest of {len(raw)} bytes is over the {MAX_MANIFEST_BYTES}-byte limit; refused"
        )
    try:
        obj = canonical.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ContentError(f"manifest is not valid JSON: {e}") from None
    except RecursionError:  # `[[[[...` from a hostile registry: nested past what json can decode
        raise ContentError("manifest is not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ContentError("manifest is not a JSON object")
    kind = obj.get("mediaType") or media_type
    try:
        if kind in mediatypes.INDEX_TYPES or (kind is None and "manifests" in obj):
            return Index.from_json(obj, raw=raw)
        if kind in mediatypes.MANIFEST_TYPES or (kind is None and "layers" in obj):
            return Manifest.from_json(obj, raw=raw)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ContentError(f"malformed manifest: {e}") from None
    raise ContentError(f"unsupported manifest media type {kind!r}")


def _with_optional(
    out: dict[str, Any], artifact_type: str | None, subject: Descriptor | None, annotations: Mapping[str, str]
) -> dict[str, Any]:
    """The optional fields manifests and indexes share, written only when set (absent, never null)."""
    if artifact_type:
        out["artifactType"] = artifact_type
    if subject is not None:
        out["subject"] = subject.to_json()
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ContentError(f"field {key!r} is missing or not a string")
    return value


def _str_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ContentError("annotations must map strings to strings")
    return dict(value)


def _schema_version(obj: Mapping[str, Any]) -> int:
    version = obj.get("schemaVersion")
    if version != 2:
        raise ContentError(f"unsupported schemaVersion {version!r} (expected 2)")
    return 2


def index_of(manifests: Sequence[Descriptor], **kw: Any) -> Index:
    return Index(manifests=tuple(manifests), **kw)
