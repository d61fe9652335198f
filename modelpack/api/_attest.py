"""What a build attaches to its release index: SLSA provenance and the CycloneDX SBOM.

Wiring only: the facts come from the build's own results (bundle, image, lock) and the GitHub Actions
run identity from the `environ` the build was given (never from os.environ here); the documents are
made in `trust/`, attached through `evidence/attestations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelpack import __version__
from modelpack.bundle.build import BundleResult
from modelpack.evidence.attestations import attach_envelope, attach_sbom
from modelpack.image.build import ImageResult
from modelpack.image.request import ImageRequest
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Target
from modelpack.trust.keys import PrivateKey
from modelpack.trust.sbom import Package, SbomFacts, sbom_bytes
from modelpack.trust.slsa import BuildFacts, CiRun, provenance_statement


@dataclass(frozen=True)
class BuildInputs:
    base_name: str
    base_digest: str
    builder: str  # "daemonless" | "docker"
    parameters: Mapping[str, str]  # what the build was asked for


def attest(
    target: Target,
    index: Descriptor,
    bundle: BundleResult,
    image: ImageResult,
    request: ImageRequest,
    inputs: BuildInputs,
    environ: Mapping[str, str],
    key: PrivateKey | None,
) -> tuple[Descriptor, ...]:
    record = bundle.record
    facts = BuildFacts(
        name=bundle.name,
        version=bundle.version,
        index_digest=index.digest,
        image_digest=image.manifest.digest,
        bundle_digest=bundle.manifest.digest,
        modelpack_version=__version__,
        git=record.git,
        datasets=record.datasets,
        lock=record.lock,
        base_name=inputs.base_name,
        base_digest=inputs.base_digest,
        builder=inputs.builder,
        ci=CiRun.from_environment(environ),
        parameters=inputs.parameters,
    )
    created = {mt.ANN_CREATED: record.created}
    provenance = attach_envelope(
        target, index, mt.PROVENANCE_ARTIFACT, provenance_statement(facts), key, created
    )
    chosen = bundle.lock.select(request.target.marker_environment())
    model = record.serving.model if record.serving else None
    sbom = SbomFacts(
        name=bundle.name,
        version=bundle.version,
        created=record.created,
        index_digest=index.digest,
        bundle_digest=bundle.manifest.digest,
        packages=tuple(Package(p.name, p.version, p.hashes) for p in chosen),
        base_name=inputs.base_name,
        base_digest=inputs.base_digest,
        model_files=tuple(f for f in record.files if model and f.path == model),
        model_format=record.serving.format if record.serving else None,
        metrics=record.metrics,
        datasets=record.datasets,
        params=record.params,
    )
    return provenance, attach_sbom(target, index, sbom_bytes(sbom), record.created)
