"""Deeply nested JSON pushed by a writer with no key (issue 21, item 11): an SBOM, a DSSE envelope, an
in-toto payload and a policy nested past what json (or a later recursive walk) can take. Each ends in a
verdict or one error line through the real registry, never an internal RecursionError."""

from __future__ import annotations

import base64
import json

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.places import make_release
from support.registry_helpers import client_for
from support.release_fixtures import build, push, variant

from modelpack.environment.history import ensure_anchor
from modelpack.evidence.evidence import attach
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.registry.client import RegistryRepository
from modelpack.store.layout import LayoutStore
from modelpack.trust import keys

DEEP = 100_000  # past the C decoder's own recursion limit
SHALLOW_BUT_DEEP = 900  # under it: json decodes it, a recursive walk after it would not survive


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _nested_object(depth: int, key: str) -> bytes:
    return (f'{{"{key}":' * depth).encode() + b"1" + b"}" * depth


def test_the_bounded_reader_refuses_deep_documents_as_value_errors() -> None:
    for depth in (DEEP, SHALLOW_BUT_DEEP, canonical.MAX_DEPTH + 1):
        with pytest.raises(ValueError, match="nested deeper than"):
            canonical.loads(_nested(depth))
    assert canonical.loads(_nested(canonical.MAX_DEPTH)) is not None
    assert canonical.loads(b'{"a": [{"b": 1}]}') == {"a": [{"b": 1}]}


@pytest.mark.parametrize("depth", [DEEP, SHALLOW_BUT_DEEP])
def test_verify_of_deeply_nested_evidence_is_a_verdict(
    registry: RegistryProcess,
    repo: str,
    tmp_path,
    depth: int,  # type: ignore[no-untyped-def]
) -> None:
    store = LayoutStore(tmp_path / "store")
    build(variant(tmp_path, "iris-onnx"), store, "1.0.0")
    push(store, "iris-onnx:1.0.0", f"{registry.host}/{repo}:1.0.0")
    client = client_for(registry.host)
    try:
        target = RegistryRepository(client, repo)
        release = target.get_manifest("1.0.0")
        subject = Descriptor(release.media_type, release.digest, len(release.raw))
        attach(target, subject, mt.SBOM_ARTIFACT, _nested_object(depth, "bomFormat"), mt.CYCLONEDX_JSON)
        # a DSSE envelope nested itself, and a well-formed one whose in-toto payload is nested
        attach(target, subject, mt.PROVENANCE_ARTIFACT, _nested(depth), mt.DSSE_ENVELOPE)
        envelope = {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(_nested_object(depth, "subject")).decode(),
            "signatures": [{"keyid": "x", "sig": base64.b64encode(b"x").decode()}],
        }
        attach(
            target,
            subject,
            mt.TEST_REPORT_ARTIFACT,
            json.dumps(envelope).encode(),
            mt.DSSE_ENVELOPE,
            {"dev.modelpack.test.passed": "true", "dev.modelpack.test.created": "2026-12-01T00:00:00Z"},
        )
    finally:
        client.close()
    pub = keys.generate(tmp_path / "k").public
    ref = f"{registry.host}/{repo}:1.0.0"
    for only in ("sbom", "provenance", "test"):
        out = run_main("verify", ref, "--key", str(pub), "--only", only)
        assert out.returncode == 1, (only, out.stdout, out.stderr)
        assert "internal error" not in out.stderr.lower() and "RecursionError" not in out.stderr + out.stdout
        assert "Traceback" not in out.stderr
        assert only in out.stdout.lower() or only in out.stderr.lower(), (only, out.stdout, out.stderr)


@pytest.mark.parametrize("depth", [DEEP, SHALLOW_BUT_DEEP])
def test_promote_under_a_deeply_nested_policy_is_one_error_line(
    registry: RegistryProcess, repo: str, depth: int
) -> None:
    client = client_for(registry.host)
    try:
        target = RegistryRepository(client, repo)
        make_release(target, "1.0.0", "1.0.0")
        subject = ensure_anchor(target, "prod", None)
        payload = b'{"env":"prod","requirements":' + _nested(depth) + b"}"
        attach(
            target,
            subject,
            mt.POLICY_ARTIFACT,
            payload,
            "application/json",
            {mt.ANN_CREATED: "2026-12-01T00:00:00.000000Z", "dev.modelpack.env": "prod"},
        )
    finally:
        client.close()
    ref = f"{registry.host}/{repo}"
    promote = ("promote", f"{ref}:1.0.0", "prod", "--force", "--reason", "x")
    for argv in (promote, ("policy", "show", ref, "prod")):
        out = run_main(*argv)
        assert out.returncode == 1, (argv, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") <= 2, out.stderr
        assert "internal error" not in out.stderr.lower() and "Recursion" not in out.stderr
