"""A registry that refuses halfway: a scripted httpx transport in front of the real registry answers 500 to
one kind of request (what a real registry will not do on demand); everything else reaches the registry."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.places import attach_report, event_count, make_release, runtime, tag_digest
from support.registry_helpers import client_for

from modelpack.environment.history import load_history
from modelpack.environment.place import Place
from modelpack.environment.promote import promote, rollback
from modelpack.errors import PromotionError
from modelpack.registry.client import RegistryRepository
from modelpack.registry.transport import RetryPolicy

Refuse = Callable[[httpx.Request], bool]


class Refusing(httpx.BaseTransport):
    """Forwards to the real registry, except requests `refuse` picks, which get a 500."""

    def __init__(self, refuse: Refuse) -> None:
        self.refuse = refuse
        self.real = httpx.HTTPTransport()
        self.refused = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse(request):
            self.refused += 1
            return httpx.Response(500, json={"errors": [{"code": "UNKNOWN", "message": "disk on fire"}]})
        return self.real.handle_request(request)


def _place(registry: RegistryProcess, repo: str, refuse: Refuse) -> tuple[Place, Refusing]:
    transport = Refusing(refuse)
    client = client_for(
        registry.host, transport=transport, sleep=lambda _s: None, retry=RetryPolicy(attempts=2, base_delay=0)
    )
    return Place(RegistryRepository(client, repo), None, f"{registry.host}/{repo}"), transport


def _prod_put(request: httpx.Request) -> bool:
    return request.method == "PUT" and request.url.path.endswith("/manifests/prod")


@pytest.fixture
def setup(registry: RegistryProcess, repo: str) -> tuple[Place, dict[str, str]]:
    """prod at 1.0.0 through a healthy client; 1.1.0 tested and ready to promote."""
    with client_for(registry.host) as client:
        place = Place(RegistryRepository(client, repo), None, f"{registry.host}/{repo}")
        digests = {}
        for v in ("1.0.0", "1.1.0"):
            release = make_release(place.target, v, v)
            attach_report(place.target, release)
            digests[v] = release.digest
        promote(place, "1.0.0", "prod", runtime=runtime())
    return place, digests


def test_a_refused_tag_put_leaves_everything_unchanged(
    registry: RegistryProcess, repo: str, setup: tuple[Place, dict[str, str]]
) -> None:
    healthy, digests = setup
    with client_for(registry.host) as client:
        before = load_history(RegistryRepository(client, repo), "prod")
    place, transport = _place(registry, repo, _prod_put)
    with pytest.raises(PromotionError) as caught:
        promote(place, "1.1.0", "prod", runtime=runtime())
    message = str(caught.value)
    assert "refused the tag PUT" in message and "prod is unchanged at" in message
    assert "no event was recorded" in message and "disk on fire" in message
    assert transport.refused >= 1
    with client_for(registry.host) as client:
        check = Place(RegistryRepository(client, repo), None, healthy.display)
        assert tag_digest(check, "prod") == digests["1.0.0"]
        assert load_history(check.target, "prod") == before and event_count(check, "prod") == 1


def test_a_refused_rollback_put_leaves_everything_unchanged(
    registry: RegistryProcess, repo: str, setup: tuple[Place, dict[str, str]]
) -> None:
    healthy, digests = setup
    place, _ = _place(registry, repo, _prod_put)
    # prod never ran 1.1.0: only a forced rollback (with its reason) gets as far as the tag PUT
    with pytest.raises(PromotionError, match="prod is unchanged at"):
        rollback(place, "prod", "1.1.0", force=True, reason="incident drill", runtime=runtime())
    with client_for(registry.host) as client:
        check = Place(RegistryRepository(client, repo), None, healthy.display)
        assert tag_digest(check, "prod") == digests["1.0.0"] and event_count(check, "prod") == 1


def test_an_event_that_cannot_be_written_puts_the_tag_back(
    registry: RegistryProcess, repo: str, setup: tuple[Place, dict[str, str]]
) -> None:
    """The tag moved, then the event's manifest PUT is refused: the tag is restored and the error says so."""
    healthy, digests = setup

    def event_manifest(request: httpx.Request) -> bool:
        return (
            request.method == "PUT"
            and "/manifests/sha256:" in request.url.path
            and b"dev.modelpack.event.action" in request.content
        )

    place, transport = _place(registry, repo, event_manifest)
    with pytest.raises(PromotionError, match=r"could not record the event .*prod was put back at"):
        promote(place, "1.1.0", "prod", runtime=runtime())
    assert transport.refused >= 1
    with client_for(registry.host) as client:
        check = Place(RegistryRepository(client, repo), None, healthy.display)
        assert tag_digest(check, "prod") == digests["1.0.0"]
        assert event_count(check, "prod") == 1
