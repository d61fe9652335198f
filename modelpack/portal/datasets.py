"""Dataset artifacts in the portal: a model's dataset entry links to the dataset version it names when the
portal was given that dataset's repository too, and that version has a page of its own.

An entry links by the digest its record keeps (`DatasetEntry.digest`), not by its tag: the page shows
exactly what the model was built with, even after the tag moved.
"""

from __future__ import annotations

import re
from typing import Any

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def ref_repository(ref: str) -> str:
    """REG/REPO of a `ref:` as modelpack.yaml writes it (REG/REPO:VERSION or REG/REPO@DIGEST)."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def linked(entry: dict[str, Any], slug_of: dict[str, str]) -> tuple[str, str] | None:
    """(slug, digest) of the dataset page a model's dataset entry links to, or None: no ref, no digest,
    or a repository the portal was not given."""
    ref, digest = entry.get("ref"), entry.get("digest")
    if not ref or not digest or not _DIGEST.fullmatch(str(digest)):
        return None
    slug = slug_of.get(ref_repository(str(ref)))
    return (slug, str(digest)) if slug is not None else None


def file_name(digest: str) -> str:
    """A digest as a page's file name: no colon, which some file systems and static hosts refuse."""
    return digest.replace(":", "-")
