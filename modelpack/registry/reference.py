"""References: `host[:port]/repo[:tag][@digest]`, Docker Hub short names, and `oci:PATH[:TAG]` layouts.

The grammar follows distribution's `reference` package (what docker accepts), so a name that works in
`docker pull` works here and a name docker refuses is refused here with the reason.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from modelpack.errors import UsageError
from modelpack.oci import digest as digests

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# docker's config.json keys Docker Hub credentials by this legacy URL, not by a host name.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
OCI_SCHEME = "oci:"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
_HOST_RE = re.compile(
    r"^(?:\[[a-fA-F0-9:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)"
    r"(?::[0-9]{1,5})?$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed reference. For `oci:` layouts `registry` is empty and `layout_path` names the directory."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    layout_path: str | None = None

    @property
    def is_layout(self) -> bool:
        return self.layout_path is not None

    @property
    def api_host(self) -> str:
        """The host the distribution API is served on (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def auth_key(self) -> str:
        """The key docker's config.json stores this registry's credentials under."""
        return auth_key_for(self.registry)

    @property
    def name(self) -> str:
        """`host/repo` (or `oci:PATH`), without tag or digest: what messages name."""
        if self.layout_path is not None:
            return f"{OCI_SCHEME}{self.layout_path}"
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to ask the manifest endpoint for: the digest if pinned, else the tag, else `latest`."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        if self.layout_path is None:
            _check_tag(tag, tag)
        elif not tag:
            raise UsageError("empty tag")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=digests.validate(digest))

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def auth_key_for(registry: str) -> str:
    return DOCKER_HUB_AUTH_KEY if registry in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io") else registry


def parse_reference(text: str) -> Reference:
    """Parse `text` or raise a UsageError that names the problem."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty reference", hint="expected HOST/REPO[:TAG][@sha256:...] or oci:PATH[:TAG]")
    if text != text.strip() or any(c.isspace() for c in text):
        raise UsageError(f"reference {text!r} contains whitespace")
    if text.startswith(OCI_SCHEME):
        return _parse_layout(text)
    return _parse_remote(text)


def _parse_layout(text: str) -> Reference:
    rest = text[len(OCI_SCHEME) :]
    slash = rest.rfind("/")
    head, tail = rest[: slash + 1], rest[slash + 1 :]
    digest = None
    if "@" in tail:
        tail, digest = tail.split("@", 1)
        _check_digest(digest, text)
    tag = None
    if ":" in tail:
        tail, tag = tail.split(":", 1)
        if not tag:
            raise UsageError(f"reference {text!r} has an empty tag after ':'")
    path = head + tail
    if not path:
        raise UsageError(f"reference {text!r} names no layout directory", hint="expected oci:PATH[:TAG]")
    return Reference(registry="", repository="", tag=tag, digest=digest, layout_path=path)


def _parse_remote(text: str) -> Reference:
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        _check_digest(digest, text)
    tag = None
    last = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last:  # a ':' after the last '/' is a tag, before it a port
        rest, tag = rest[:colon], rest[colon + 1 :]
        _check_tag(tag, text)
    registry, repository = _split_host(rest, text)
    for component in repository.split("/"):
        if not component:
            raise UsageError(f"reference {text!r} has an empty path component")
        if not _COMPONENT_RE.match(component):
            problem = "uppercase letters" if component.lower() != component else "characters not allowed"
            raise UsageError(
                f"repository {repository!r} in {text!r} has {problem}",
                hint="repository names are lowercase letters, digits and . _ - separators",
            )
    if len(repository) + len(registry) + 1 > MAX_NAME:
        raise UsageError(f"reference {text[:60]!r}... is longer than {MAX_NAME} characters")
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def _split_host(name: str, text: str) -> tuple[str, str]:
    if not name:
        raise UsageError(f"reference {text!r} names no repository")
    first, sep, remainder = name.partition("/")
    # As docker decides: the first component is a host when it looks like one (a dot, a port, localhost,
    # uppercase); otherwise the whole name is a Docker Hub repository.
    looks_like_host = any(c in first for c in ".:[") or first == "localhost" or first.lower() != first
    if not sep or not looks_like_host:
        registry, repository = DOCKER_HUB, name
    else:
        if not _HOST_RE.match(first):
            raise UsageError(f"registry host {first!r} in {text!r} is malformed")
        registry, repository = first, remainder
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository


def _check_tag(tag: str, text: str) -> None:
    if not _TAG_RE.match(tag):
        raise UsageError(
            f"tag {tag!r} in {text!r} is malformed",
            hint="tags are up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
        )


def _check_digest(value: str, text: str) -> None:
    if not digests.is_digest(value):
        raise UsageError(
            f"digest {value!r} in {text!r} is malformed",
            hint="expected sha256: followed by 64 lowercase hex characters",
        )


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port): plain HTTP by default there."""
    h = host.strip()
    if h.startswith("["):
        h = h[1 : h.find("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
