"""The client asks a registry once whether it has the referrers API, then goes straight to the fallback."""

from __future__ import annotations

from modelpack.registry.client import RegistryRepository
from modelpack.registry.transport import RegistryClient


def test_a_registry_without_the_api_is_asked_once(registry, repo: str) -> None:  # type: ignore[no-untyped-def]
    paths: list[str] = []
    client = RegistryClient(registry.host, event_hooks={"request": [lambda r: paths.append(r.url.path)]})
    with client:
        target = RegistryRepository(client, repo)
        subject = "sha256:" + "a" * 64
        assert target.referrers(subject) == []
        assert target.referrers(subject) == []
    api_calls = [p for p in paths if "/referrers/" in p]
    assert api_calls == [f"/v2/{repo}/referrers/{subject}"]
    assert client.referrers_api is False
    assert sum("/manifests/sha256-" in p for p in paths) == 2  # the fallback tag, each time
