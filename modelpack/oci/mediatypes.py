"""Media types modelpack reads and writes (OCI image-spec, Docker v2, CNCF ModelPack model-spec)."""

from __future__ import annotations

# OCI image-spec
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
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
