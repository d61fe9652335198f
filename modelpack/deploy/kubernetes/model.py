"""What the manifests are rendered from: a frozen description of what one environment runs, and how.

The renderers take this and nothing else (no registry, no files), so the same input always gives the same
bytes; the api builds it from the registry (the environment's digest, the release's record, its canary).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modelpack.errors import UsageError
from modelpack.oci import digest as digests

# RFC 1123 label: what Kubernetes accepts as a Deployment/Service/namespace name (63 at most).
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Quantities as the API server parses them (a subset: plain decimal with an optional suffix).
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
# Leaves room for "-canary" on the longest derived name.
MAX_NAME = 63 - len("-canary")


@dataclass(frozen=True)
class Track:
    """One release that runs: the version tag it was built as and the release index digest."""

    version: str
    digest: str

    def __post_init__(self) -> None:
        if not digests.is_digest(self.digest):
            raise UsageError(f"{self.digest!r} is not a digest (sha256:<64 hex>)")


@dataclass(frozen=True)
class Resources:
    """Requests (what the scheduler reserves) and the memory limit. No CPU limit: throttling a model
    server's CPU adds latency with no isolation gain; memory is limited at the request, so a leak is
    killed instead of evicting neighbours."""

    cpu: str = "250m"
    memory: str = "512Mi"

    def __post_init__(self) -> None:
        for what, value in (("cpu", self.cpu), ("memory", self.memory)):
            if not _QUANTITY.match(value):
                raise UsageError(
                    f"{what} {value!r} is not a Kubernetes quantity", hint="e.g. cpu 500m or 2, memory 1Gi"
                )


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway the HTTPRoute of a canary attaches to (it must exist; modelpack writes no Gateway)."""

    name: str = "gateway"
    namespace: str | None = None

    @classmethod
    def parse(cls, text: str) -> GatewayRef:
        namespace, _, name = text.rpartition("/")
        for part in (name, namespace) if namespace else (name,):
            if not _LABEL.match(part):
                raise UsageError(f"--gateway {text!r}: give NAME or NAMESPACE/NAME (RFC 1123 labels)")
        return cls(name, namespace or None)


@dataclass(frozen=True)
class KubeDeployment:
    """What `environment` runs: `stable`, and during a canary `canary` taking `weight` percent."""

    name: str  # the app: Deployment/Service/HTTPRoute names derive from it
    environment: str
    repository: str  # HOST/REPO the image is pulled from, always by digest
    stable: Track
    port: int
    canary: Track | None = None
    weight: int = 0  # the canary's share, 1-99, when canary is set
    canary_port: int | None = None  # the canary release's own serving port, when it differs
    namespace: str | None = None  # None: the environment's name
    replicas: int = 1
    resources: Resources = field(default_factory=Resources)
    gateway: GatewayRef = field(default_factory=GatewayRef)

    def __post_init__(self) -> None:
        if not _LABEL.match(self.name) or len(self.name) > MAX_NAME:
            raise UsageError(
                f"name {self.name!r} cannot name Kubernetes objects",
                hint=f"lowercase letters, digits and '-', at most {MAX_NAME} characters",
            )
        if not _LABEL.match(self.ns):
            raise UsageError(f"namespace {self.ns!r} is not an RFC 1123 label", hint="e.g. prod or ml-prod")
        for port in (self.port, self.canary_port or self.port):
            if not 1 <= port <= 65535:
                raise UsageError(f"port {port} is outside 1-65535")
        if self.canary is not None and not 1 <= self.weight <= 99:
            raise UsageError(f"canary weight {self.weight} is outside 1-99")
        if self.canary is None and self.weight:
            raise UsageError("a canary weight needs a canary release")
        if not 0 <= self.replicas <= 1000:
            raise UsageError(f"replicas {self.replicas} is outside 0-1000")

    @property
    def ns(self) -> str:
        return self.namespace or self.environment.replace("_", "-").replace(".", "-")

    def image(self, track: Track) -> str:
        return f"{self.repository}@{track.digest}"


def app_name(repository: str) -> str:
    """A Kubernetes name from a repository's last path segment (`host/team/iris-onnx` -> `iris-onnx`)."""
    last = repository.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", last).strip("-")[:MAX_NAME].strip("-")
    return name or "model"
