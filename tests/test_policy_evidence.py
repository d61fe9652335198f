"""Policies over real evidence: releases built, pushed to the real registry and signed with `modelpack
sign`; promote through the CLI. A policy naming a key that signed nothing refuses; the key that signed
passes and the event names it; a model signature requirement rehashes the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.places import attach_report
from support.signed import Built, built, open_target, pushed_copy

from modelpack.trust import keys


@pytest.fixture
def releases(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return built(tmp_path_factory)


def _tested(b: Built, ref: str, digest: str) -> None:
    targets, target = open_target(b, ref)
    with targets:
        attach_report(target, target.get_manifest(digest))


def test_a_signature_policy_passes_the_signing_key_and_refuses_a_stranger(
    registry: RegistryProcess, releases: Built, tmp_path: Path
) -> None:
    ref, digest = pushed_copy(releases, registry.host, releases.bundle_tag)
    repo = ref.rsplit(":", 1)[0]
    _tested(releases, ref, digest)
    signer = keys.generate(tmp_path / "release")
    stranger = keys.generate(tmp_path / "stranger")
    assert run_cli("sign", ref, "--key", str(signer.private)).returncode == 0

    assert run_cli("policy", "set", repo, "prod", "--require", f"signature:{stranger.public}").returncode == 0
    refused = run_cli("promote", ref, "prod", "--force", "--reason", "incident")
    assert refused.returncode == 1
    assert "signature:stranger.pub" in refused.stderr and "--force does not override" in refused.stderr
    assert refused.stderr.count("error:") == 1

    require = f"test,signature:{signer.public},model-signature:{signer.public}"
    assert run_cli("policy", "set", repo, "prod", "--require", require).returncode == 0
    moved = run_cli("promote", ref, "prod", "--json")
    assert moved.returncode == 0, moved.stderr
    checked = {c["kind"]: c for c in json.loads(moved.stdout)["evidence"][1:]}
    assert checked["signature"]["ok"] and checked["signature"]["signer"] == signer.keyid
    assert checked["model-signature"]["ok"] and checked["model-signature"]["signer"] == signer.keyid

    history = run_cli("history", repo, "prod", "--json")
    event = json.loads(history.stdout)["events"][0]
    assert [c["kind"] for c in event["evidence"]] == ["test", "test", "signature", "model-signature"]
    text = run_cli("history", repo, "prod")
    assert "signature:ok" in text.stdout

    # the incident tool does not reread the weights for the model signature: it says so and goes ahead
    back = run_cli("rollback", repo, "prod", "1.0.0", "--json")
    assert back.returncode == 0, back.stderr
    notes = json.loads(back.stdout)["notes"]
    assert any("model-signature:release.pub not checked by rollback" in n for n in notes)
    assert [c["kind"] for c in json.loads(back.stdout)["evidence"]] == ["test", "signature"]
