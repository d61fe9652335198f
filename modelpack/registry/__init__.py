"""Distribution-spec client on httpx: references, auth, blobs, manifests, tags, referrers."""

from modelpack.oci.target import BlobCopy
from modelpack.registry.client import RegistryRepository
from modelpack.registry.dockerconfig import Credential, DockerConfig, credentials_from_docker
from modelpack.registry.login import login
from modelpack.registry.parallel import push_blobs, run_parallel
from modelpack.registry.ranged import RangeOptions
from modelpack.registry.reference import Reference, is_loopback, parse_reference
from modelpack.registry.transport import RegistryClient, RetryPolicy
from modelpack.registry.upload import BlobOpener, UploadOptions

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
