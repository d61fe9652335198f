"""Helpers shared by test modules (moved from test_promote.py)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess

from modelpack.environment.history import EVENT_TYPE, anchor
from modelpack.environment.place import Place
from modelpack.environment.promote import Runtime
from modelpack.errors import NotFoundError
from modelpack.evidence.evidence import attach
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index, Manifest, Platform
from modelpack.oci.target import RawManifest, Target
from modelpack.registry.client import RegistryRepository
from modelpack.store.layout import LayoutStore
from modelpack.store.storerepo import StoreRepository
from support.registry_helpers import Requests, client_for

REPORT_PASSED = "dev.modelpack.test.passed"


def make_release(target: Target, tag: str, version: str, weights: bytes = b"") -> RawManifest:
    """A release index (version annotation, bundle child with unknown/unknown platform) under `tag`."""
    weights = weights or f"weights of {version}".encode()
    config = Descriptor.of(mt.MODEL_CONFIG, json.dumps({"descriptor": {"name": version}}).encode())
    layer = Descriptor.of(mt.MODEL_WEIGHT_TAR, weights, annotations={mt.ANN_FILEPATH: "models/w.bin"})
    target.write_blob(config, [json.dumps({"descriptor": {"name": version}}).encode()])
    target.write_blob(layer, [weights])
    bundle = Manifest(config=config, layers=(layer,), artifact_type=mt.MODEL_ARTIFACT)
    braw = bundle.to_bytes()
    target.put_manifest(bundle.digest, RawManifest(braw, bundle.media_type, bundle.digest))
    entry = Descriptor(
        bundle.media_type,
        bundle.digest,
        bundle.size,
        artifact_type=mt.MODEL_ARTIFACT,
        platform=Platform("unknown", "unknown"),
    )
    index = Index(manifests=(entry,), annotations={mt.ANN_VERSION: version})
    raw = index.to_bytes()
    target.put_manifest(tag, RawManifest(raw, index.media_type, index.digest))
    return RawManifest(raw, index.media_type, index.digest)


def attach_report(target: Target, release: RawManifest, passed: bool = True) -> Descriptor:
    subject = Descriptor(release.media_type, release.digest, len(release.raw))
    body = json.dumps({"passed": passed}).encode()
    return attach(
        target,
        subject,
        mt.TEST_REPORT_ARTIFACT,
        body,
        "application/json",
        {REPORT_PASSED: "true" if passed else "false", "dev.modelpack.test.created": "2026-11-26T00:00:00Z"},
    )


def fake_clock(start: float = 1_790_000_000.0, step: float = 1.0) -> Callable[[], float]:
    counter = itertools.count()
    return lambda: start + step * next(counter)


def runtime(**kw: object) -> Runtime:
    kw.setdefault("clock", fake_clock())
    kw.setdefault("environ", {})
    kw.setdefault("actor", "alice@laptop")
    return Runtime(**kw)  # type: ignore[arg-type]


def tag_digest(place: Place, short: str) -> str | None:
    try:
        return place.target.get_manifest(short).digest
    except NotFoundError:
        return None


def event_count(place: Place, env: str) -> int:
    return len(place.target.referrers(anchor(env, place.name).digest, EVENT_TYPE))


@dataclass
class Kind:
    place: Place
    requests: Requests | None = None


@pytest.fixture(params=["registry", "layout", "store"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kind]:
    """The same place abstraction over the three targets a user can promote in."""
    if request.param == "registry":
        reg: RegistryProcess = request.getfixturevalue("registry")
        repo: str = request.getfixturevalue("repo")
        seen = Requests()
        client = client_for(reg.host, event_hooks={"request": [seen]})
        try:
            yield Kind(Place(RegistryRepository(client, repo), None, f"{reg.host}/{repo}"), seen)
        finally:
            client.close()
    elif request.param == "layout":
        yield Kind(Place(LayoutStore(tmp_path / "layout"), None, f"oci:{tmp_path / 'layout'}"))
    else:
        yield Kind(Place(StoreRepository(LayoutStore(tmp_path / "store"), "iris"), "iris", "iris"))
