"""The release: one OCI image index holding the serving image and the bundle, tagged `<version>`.

`docker pull`/`docker run` of the tag select the linux/amd64 image and ignore the bundle (platform
unknown/unknown), while modctl, KitOps and KServe find the bundle by its artifactType. One digest names
both, so promotion and rollback are a single PUT of these bytes under another tag.
"""

from __future__ import annotations

from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index, Platform
from modelpack.record.record import Record

UNKNOWN_PLATFORM = Platform(architecture="unknown", os="unknown")


def release_index(image: Descriptor | None, bundle: Descriptor, record: Record) -> Index:
    bundle_entry = Descriptor(
        bundle.media_type,
        bundle.digest,
        bundle.size,
        artifact_type=mt.MODEL_ARTIFACT,
        platform=UNKNOWN_PLATFORM,
    )
    annotations = {
        mt.ANN_VERSION: record.version,
        mt.ANN_CREATED: record.created,
        mt.ANN_TITLE: record.name,
        mt.ANN_RECORD: record.to_bytes().decode(),
    }
    if record.git and record.git.commit:
        annotations[mt.ANN_REVISION] = record.git.commit
    manifests = (image, bundle_entry) if image is not None else (bundle_entry,)
    return Index(manifests=manifests, annotations=annotations)
