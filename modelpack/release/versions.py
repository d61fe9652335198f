"""Version tags are immutable: a version tag names exactly one release (or dataset version), for good. A push
to a version tag that already names another digest is refused unless forced, and a forced overwrite leaves
its trace in the registry (a referrer of what replaced it), so the history of a tag is never silently lost.
"""

from __future__ import annotations

import json
import time

from modelpack.errors import NotFoundError, RefusedError
from modelpack.evidence.evidence import attach
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import RawManifest, Target

ANN_OVERWRITE_TAG = "dev.modelpack.overwrite.tag"


def check_overwrite(dest: Target, tag: str, digest: str, display: str, force: bool) -> str | None:
    """A version tag that names another digest is refused unless forced; returns a note when forced."""
    try:
        there = dest.get_manifest(tag).digest
    except NotFoundError:
        return None
    if there == digest:
        return None
    if not force:
        raise RefusedError(
            f"refusing to push: {display} already names {there}, not {digest}; version tags are immutable",
            hint="bump the version, or pass --force to replace it (recorded)",
        )
    return f"forced: {display} named {there} before and now names {digest}"


def record_overwrite(dest: Target, root: RawManifest, tag: str, note: str, who: str) -> str:
    """A forced overwrite leaves its trace in the registry: a referrer of the release that replaced it.
    `who` is the actor (environment/actor.py), given by the caller."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {"tag": tag, "digest": root.digest, "note": note, "who": who, "when": when}
    subject = Descriptor(root.media_type, root.digest, len(root.raw))
    annotations = {ANN_OVERWRITE_TAG: tag, mt.ANN_CREATED: when}
    desc = attach(
        dest,
        subject,
        mt.OVERWRITE_ARTIFACT,
        json.dumps(body, sort_keys=True).encode(),
        "application/json",
        annotations,
    )
    return f"recorded as {desc.digest}"
