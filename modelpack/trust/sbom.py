"""The CycloneDX 1.6 SBOM of a release: the image's Python packages from the lock, the base image by
digest, the model with its model card, and the datasets.

Built with cyclonedx-python-lib's model classes and serializer. The library (11.x) has no class for
`modelCard` (component.py leaves `model_card` commented out), so the card is added to the serialized JSON
of the model component, by its bom-ref; the tests validate the whole document with the library's strict
1.6 schema validator. The document is deterministic (serial number from the index digest, timestamp
from the record), so a rebuild writes the same bytes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from modelpack.record.record import DatasetEntry, FileEntry, Metric, ParamValue

SPEC_VERSION = "1.6"
MODEL_REF = "model"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    hashes: tuple[str, ...] = ()  # "sha256:<hex>"


@dataclass(frozen=True)
class SbomFacts:
    name: str
    version: str
    created: str  # RFC 3339
    index_digest: str
    bundle_digest: str
    packages: tuple[Package, ...] = ()
    base_name: str | None = None
    base_digest: str | None = None
    model_files: tuple[FileEntry, ...] = ()  # the weights the model component is made of
    model_format: str | None = None
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    datasets: tuple[DatasetEntry, ...] = ()
    params: Mapping[str, ParamValue] = field(default_factory=dict)


def sbom_bytes(facts: SbomFacts) -> bytes:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    def hashes(values: Sequence[str]) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=v.split(":", 1)[-1]) for v in values]

    f = facts
    bom = Bom(serial_number=uuid5(NAMESPACE_URL, f"modelpack:{f.index_digest}"))
    bom.metadata.timestamp = datetime.fromisoformat(f.created.replace("Z", "+00:00"))
    root = Component(
        name=f.name,
        version=f.version,
        type=ComponentType.CONTAINER,
        bom_ref="release",
        purl=PackageURL("oci", name=f.name, version=f.index_digest),
        hashes=hashes([f.index_digest]),
        description="the release index (serving image and CNCF ModelPack bundle)",
    )
    bom.metadata.component = root
    parts: list[Component] = []
    for p in f.packages:
        purl = PackageURL("pypi", name=p.name, version=p.version)
        parts.append(
            Component(
                name=p.name,
                version=p.version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=str(purl),
                hashes=hashes(p.hashes),
            )
        )
    if f.base_digest:
        base_name = f.base_name or "base"
        parts.append(
            Component(
                name=base_name,
                type=ComponentType.CONTAINER,
                bom_ref="base-image",
                purl=PackageURL("oci", name=_last_segment(base_name), version=f.base_digest),
                hashes=hashes([f.base_digest]),
                description="the serving image's base, by digest",
            )
        )
    for d in f.datasets:
        props = [
            Property(name="modelpack:size", value=str(d.size)),
            Property(name="modelpack:files", value=str(d.files)),
        ]
        if d.uri:
            props.append(Property(name="modelpack:uri", value=d.uri))
        parts.append(
            Component(
                name=d.name,
                type=ComponentType.DATA,
                bom_ref=_dataset_ref(d.name),
                hashes=hashes([d.sha256] if d.sha256 else []),
                properties=props,
            )
        )
    model = Component(
        name=f.name,
        version=f.version,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=MODEL_REF,
        hashes=hashes([x.sha256 for x in f.model_files]),
        properties=[Property(name="modelpack:bundle", value=f.bundle_digest)]
        + ([Property(name="modelpack:format", value=f.model_format)] if f.model_format else []),
    )
    parts.append(model)
    for c in parts:
        bom.components.add(c)
    bom.register_dependency(root, parts)
    with warnings.catch_warnings():  # the library warns of things a 1.6 document does not need
        warnings.simplefilter("ignore")
        doc = json.loads(JsonV1Dot6(bom).output_as_string())
    for c in doc.get("components", []):
        if c.get("bom-ref") == MODEL_REF:
            c["modelCard"] = model_card(f)
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def model_card(f: SbomFacts) -> dict[str, Any]:
    """CycloneDX modelCard: datasets by reference, metrics as performanceMetrics, params as properties."""
    card: dict[str, Any] = {}
    if f.datasets:
        card["modelParameters"] = {"datasets": [{"ref": _dataset_ref(d.name)} for d in f.datasets]}
    if f.metrics:
        card["quantitativeAnalysis"] = {
            "performanceMetrics": [
                {"type": k, "value": f"{m.value:g}", **({"slice": m.dataset} if m.dataset else {})}
                for k, m in sorted(f.metrics.items())
            ]
        }
    if f.params:
        card["properties"] = [
            {"name": f"modelpack:param:{k}", "value": json.dumps(v) if not isinstance(v, str) else v}
            for k, v in sorted(f.params.items())
        ]
    return card


def _dataset_ref(name: str) -> str:
    return f"dataset:{name}"


def _last_segment(reference: str) -> str:
    """`127.0.0.1:5000/base/python:3.11` -> `python` (a purl's oci name is the last path segment)."""
    path = reference.split("@", 1)[0].rsplit("/", 1)[-1]
    return path.split(":", 1)[0] or "base"
