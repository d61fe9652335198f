"""Targets' httpx transport seam, at the api level, with a registry in this process
(tests/support/memregistry.py): build, push, ls, inspect, pull, tag, and the version-tag rule (refused, then
forced and recorded) run through `modelpack.api` exactly as the CLI calls it, with no socket opened."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from support.memregistry import MemoryRegistry
from support.release_fixtures import ENV, EXAMPLES

from modelpack import api
from modelpack.errors import RefusedError
from modelpack.oci import mediatypes as mt

REPO = "registry.test/acme/iris"


def test_the_api_runs_against_an_in_process_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_a: object, **_k: object) -> None:
        raise AssertionError("a socket was opened: the transport seam was bypassed")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("DOCKER_CONFIG", os.devnull)
    registry = MemoryRegistry()
    with api.Targets(store_path=tmp_path / "store", environ=ENV, transport=registry) as targets:
        built = api.build(targets, EXAMPLES / "iris-onnx", version="1.0.0")
        pushed = api.push(targets, REPO, source=built.tag)
        assert pushed.destination == f"{REPO}:1.0.0" and pushed.copy.blobs_copied >= 3
        assert registry.repositories["acme/iris"].tags == {"1.0.0": pushed.digest}

        assert api.ls(targets, REPO).tags == ("1.0.0",)
        seen = api.inspect(targets, f"{REPO}:1.0.0")
        assert seen.to_json()["digest"] == pushed.digest

        tagged = api.tag(targets, f"{REPO}:1.0.0", "stable")
        assert tagged.digest == pushed.digest and set(registry.repositories["acme/iris"].tags) == {
            "1.0.0",
            "stable",
        }

        other = api.build(targets, EXAMPLES / "iris-onnx", version="1.0.1")
        with pytest.raises(RefusedError, match="version tags are immutable"):
            api.push(targets, f"{REPO}:1.0.0", source=other.tag, any_version=True)
        forced = api.push(targets, f"{REPO}:1.0.0", source=other.tag, any_version=True, force=True)
        assert forced.digest != pushed.digest and "forced:" in forced.notes[0]
        (record,) = targets.open(REPO).target.referrers(forced.digest, mt.OVERWRITE_ARTIFACT)
        assert record.annotations["dev.modelpack.overwrite.tag"] == "1.0.0"

    with api.Targets(store_path=tmp_path / "other-store", environ=ENV, transport=registry) as targets:
        pulled = api.pull(targets, f"{REPO}:stable")
        assert pulled.digest == pushed.digest
        assert api.list(targets).to_json()["releases"][0]["digest"] == pushed.digest
    assert ("PUT", "/v2/acme/iris/manifests/1.0.0") in registry.requests
