"""Distribution-spec client on httpx: references, auth, blobs, manifests, tags, referrers.

The names below load on first use (PEP 562): a command that only parses a reference (`build`, every
store-only verb) does not pay for httpx and the client at start-up (issue 26 item 2).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelpack.oci.target import BlobCopy
    from modelpack.registry.client import RegistryRepository
    from modelpack.registry.dockerconfig import Credential, DockerConfig, credentials_from_docker
    from modelpack.registry.login import login
    from modelpack.registry.parallel import push_blobs, run_parallel
    from modelpack.registry.ranged import RangeOptions
    from modelpack.registry.reference import Reference, is_loopback, parse_reference
    from modelpack.registry.transport import RegistryClient, RetryPolicy
    from modelpack.registry.upload import BlobOpener, UploadOptions

_HOMES = {
    "BlobCopy": "modelpack.oci.target",
    "RegistryRepository": "modelpack.registry.client",
    "Credential": "modelpack.registry.dockerconfig",
    "DockerConfig": "modelpack.registry.dockerconfig",
    "credentials_from_docker": "modelpack.registry.dockerconfig",
    "login": "modelpack.registry.login",
    "push_blobs": "modelpack.registry.parallel",
    "run_parallel": "modelpack.registry.parallel",
    "RangeOptions": "modelpack.registry.ranged",
    "Reference": "modelpack.registry.reference",
    "is_loopback": "modelpack.registry.reference",
    "parse_reference": "modelpack.registry.reference",
    "RegistryClient": "modelpack.registry.transport",
    "RetryPolicy": "modelpack.registry.transport",
    "BlobOpener": "modelpack.registry.upload",
    "UploadOptions": "modelpack.registry.upload",
}

__all__ = [
    "BlobCopy",
    "BlobOpener",
    "Credential",
    "DockerConfig",
    "RangeOptions",
    "Reference",
    "RegistryClient",
    "RegistryRepository",
    "RetryPolicy",
    "UploadOptions",
    "credentials_from_docker",
    "is_loopback",
    "login",
    "parse_reference",
    "push_blobs",
    "run_parallel",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
