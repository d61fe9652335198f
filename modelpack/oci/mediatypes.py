"""Media types modelpack reads and writes (OCI image-spec, Docker v2, CNCF ModelPack model-spec)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# OCI image-spec
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"  # read from Docker-built bases
OCTET_STREAM = "application/octet-stream"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"

# Docker v2 (what `docker push` and most base images on registries use)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# CNCF ModelPack model-spec (spec.md)
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODEL_WEIGHT_TAR = "application/vnd.cncf.model.weight.v1.tar"
MODEL_WEIGHT_CONFIG_TAR = "application/vnd.cncf.model.weight.config.v1.tar"
MODEL_CODE_TAR = "application/vnd.cncf.model.code.v1.tar"
MODEL_DOC_TAR = "application/vnd.cncf.model.doc.v1.tar"
MODEL_DATASET_TAR = "application/vnd.cncf.model.dataset.v1.tar"

# modelpack's own
RECORD = "application/vnd.modelpack.record.v1+json"
TEST_REPORT_ARTIFACT = "application/vnd.modelpack.test-report.v1+json"
PROMOTION_EVENT_ARTIFACT = "application/vnd.modelpack.promotion.v1+json"
# A version tag replaced with --force: attached to the release that replaced it (who, when, what it named).
OVERWRITE_ARTIFACT = "application/vnd.modelpack.tag-overwrite.v1+json"
DEPLOY_SPEC_ARTIFACT = "application/vnd.modelpack.deploy-spec.v1+json"  # how an environment runs
DEPLOY_STEP_ARTIFACT = "application/vnd.modelpack.deploy-step.v1+json"  # what a target did (switch, ...)
# The Kubernetes manifests of an environment (kustomize base + overlay), a referrer of the release they run.
# Its one layer is Flux's content type (RFC-0003), so Flux's OCIRepository takes it as it takes `flux push`.
DEPLOYMENT_BUNDLE_ARTIFACT = "application/vnd.modelpack.kubernetes-manifests.v1"
FLUX_CONTENT_TGZ = "application/vnd.cncf.flux.content.v1.tar+gzip"
POLICY_ARTIFACT = "application/vnd.modelpack.promotion-policy.v1+json"  # what an environment requires
# A version label set or cleared (`archived`), its meaning in the annotations (evidence/labels.py).
LABEL_ARTIFACT = "application/vnd.modelpack.label.v1+json"
# A repository's naming rule for version tags, on its repository anchor (environment/naming.py).
NAMING_ARTIFACT = "application/vnd.modelpack.naming-rule.v1+json"
# The per-environment subject that events and policies refer to (environment/history.py: anchor).
ENV_ANCHOR = "application/vnd.modelpack.env-anchor.v1"
# Pushed over a tag to untag it on registries without tag deletion (registry/client.py).
TAG_TOMBSTONE = "application/vnd.modelpack.tag-tombstone.v1"
# The local store's entry for a layer served from its source file (store/sourced.py).
SOURCED_BLOB = "application/vnd.modelpack.sourced-blob.v1+json"
# A published dataset (`modelpack dataset push`): CNCF dataset layers, and its record as a layer of its own.
# The model-spec defines no dataset artifact type, so this one is modelpack's.
DATASET_ARTIFACT = "application/vnd.modelpack.dataset.v1+json"
DATASET_RECORD = "application/vnd.modelpack.dataset-record.v1+json"
# The training history (metrics.history) as normalized JSON: a bundle layer beside the record.
METRICS_HISTORY = "application/vnd.dev.modelpack.metrics.history.v1+json"
# Signatures: Sigstore bundles as OCI 1.1 referrers, cosign's convention (artifactType = the bundle's media
# type; the predicate-type annotation tells a release signature from an OpenSSF model signature).
# Any Sigstore bundle version reads; v0.3 is what modelpack writes (the artifact type and the layer's type).
SIGSTORE_BUNDLE_FAMILY = "application/vnd.dev.sigstore.bundle"
SIGSTORE_BUNDLE = SIGSTORE_BUNDLE_FAMILY + ".v0.3+json"
ANN_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANN_BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
# Attestations (issue 14). Each kind has its own artifactType, so the referrers API filters them server-side
# and `passing_report` keeps finding test evidence by type and annotations alone; the in-toto ones (test
# report, provenance) are DSSE envelopes and name their predicate in ANN_PREDICATE_TYPE for other tools.
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
PROVENANCE_ARTIFACT = "application/vnd.modelpack.provenance.v1+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
SBOM_ARTIFACT = CYCLONEDX_JSON
# Experiment runs (modelpack/runs): a run is an artifact of its own, tagged `run-<id>` in its experiment's
# repository; its summary rides in the manifest's ANN_RUN annotation, and the listing indexes
# (RUN_LISTING, tagged `runs-index-<x>`) copy those descriptors so one read per shard lists every run.
RUN_ARTIFACT = "application/vnd.modelpack.run.v1+json"
RUN_RECORD = "application/vnd.modelpack.run-record.v1+json"
RUN_SYSTEM = "application/vnd.modelpack.run-system.v1+json"  # sampled CPU, RSS, GPU over time
RUN_CHECKPOINT_FILE = "application/vnd.modelpack.run-checkpoint-file.v1"  # one file of a checkpoint, raw
RUN_LISTING = "application/vnd.modelpack.run-listing.v1+json"


@dataclass(frozen=True)
class LayerKind:
    name: str  # as `inspect` lists it
    group: str | None  # the `unpack --filter` name that selects it (a model is its weights and configs)
    served: bool  # carried by the serving image and by a local run


# The one table of bundle layer kinds: inspect's listing, unpack's filters and what serving carries all
# read it, so a new kind of layer is one row here.
LAYER_KINDS: Mapping[str, LayerKind] = {
    MODEL_WEIGHT_TAR: LayerKind("weights", "model", served=True),
    MODEL_WEIGHT_CONFIG_TAR: LayerKind("weight-config", "model", served=True),
    MODEL_CODE_TAR: LayerKind("code", "code", served=True),
    MODEL_DOC_TAR: LayerKind("docs", "docs", served=False),
    MODEL_DATASET_TAR: LayerKind("datasets", "datasets", served=False),
    RECORD: LayerKind("record", None, served=False),
    METRICS_HISTORY: LayerKind("history", None, served=False),
}
SERVED_LAYERS = frozenset(t for t, kind in LAYER_KINDS.items() if kind.served)

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
# What we send in Accept when fetching a manifest whose type we do not know yet.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

# Annotation keys
ANN_FILEPATH = "org.cncf.model.filepath"
ANN_TITLE = "org.opencontainers.image.title"
ANN_VERSION = "org.opencontainers.image.version"
ANN_REVISION = "org.opencontainers.image.revision"
ANN_CREATED = "org.opencontainers.image.created"
ANN_SOURCE = "org.opencontainers.image.source"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_RECORD = "dev.modelpack.record"
ANN_DATASET = "dev.modelpack.dataset"  # a dataset artifact's record summary (no per-file lists)
ANN_PREDICATE_TYPE = "dev.modelpack.predicateType"  # an in-toto referrer's predicateType
ANN_RUN = "dev.modelpack.run"  # a run manifest's summary (canonical JSON): status, params, metrics, tags
ANN_CHECKPOINT = "dev.modelpack.checkpoint"  # a checkpoint file layer's checkpoint name
ANN_SIGNER = "dev.modelpack.signer"  # keyid the envelope claims: a hint for listings, never trusted
# A serving image's base (OCI image-spec annotations): the store keeps images without the base's layers,
# which stay in this registry; copies and `test` read them back from there.
ANN_BASE_NAME = "org.opencontainers.image.base.name"
ANN_BASE_DIGEST = "org.opencontainers.image.base.digest"
# The DSSE payload type of an in-toto statement (trust/dsse.py).
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
