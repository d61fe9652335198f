"""The OpenSSF model signature is bound to the bundle's files (issue 21 item 3): a pusher who adds a path
the signature format skips (`.git/config` with an fsmonitor command, `.github/...`, `model.sig`) to a
signed bundle and copies the signature onto it fails `verify --only model-signature`, a
`model-signature:` policy at promote, and `unpack`, against the real registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.hostile_tar import hostile_tar
from support.signed import Built, built, open_target, pushed_copy

from modelpack.evidence.evidence import attach, read_payload
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.target import RawManifest
from modelpack.trust import oms


@pytest.fixture
def releases(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return built(tmp_path_factory)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    made = run_cli("keygen", str(tmp_path / "release"), "--json")
    assert made.returncode == 0, made.stderr
    return Path(json.loads(made.stdout)["privateKey"]).with_suffix("")


def _with_copied_signature(ref: str, releases: Built, extra: bytes, tag: str) -> str:
    """The signed bundle at `ref` plus one code layer `extra`, tagged `tag`, with the bundle's model
    signature attached to it byte for byte (what a pusher without the key can do)."""
    targets, target = open_target(releases, ref)
    try:
        raw = target.get_manifest(ref.rsplit(":", 1)[1])
        bundle = parse(raw.raw, raw.media_type)
        assert isinstance(bundle, Manifest)
        (signature,) = [
            d
            for d in target.referrers(raw.digest, mt.SIGSTORE_BUNDLE)
            if (d.annotations or {}).get(mt.ANN_BUNDLE_PREDICATE) == oms.PREDICATE_TYPE
        ]
        layer = Descriptor.of(mt.MODEL_CODE_TAR, extra)
        target.write_blob(layer, [extra])
        evil = Manifest(bundle.config, (*bundle.layers, layer), artifact_type=bundle.artifact_type,
                        annotations=dict(bundle.annotations))  # fmt: skip
        data = evil.to_bytes()
        target.put_manifest(tag, RawManifest(data, evil.media_type, evil.digest))
        subject = Descriptor(evil.media_type, evil.digest, len(data))
        payload = read_payload(target, signature)
        attach(
            target,
            subject,
            mt.SIGSTORE_BUNDLE,
            payload,
            mt.SIGSTORE_BUNDLE,
            dict(signature.annotations or {}),
        )
    finally:
        targets.close()
    return ref.rsplit(":", 1)[0] + ":" + tag


@pytest.mark.parametrize("path", [".git/config", "model.sig"])
def test_a_copied_model_signature_over_a_bundle_with_unsigned_paths_fails_everywhere(
    registry: RegistryProcess, releases: Built, key: Path, tmp_path: Path, path: str
) -> None:
    marker = tmp_path / "PWNED"
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    assert run_cli("sign", ref, "--key", f"{key}.key").returncode == 0
    ok = run_cli("verify", ref, "--key", f"{key}.pub", "--only", "model-signature")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    config = f"[core]\n\tfsmonitor = touch {marker}; false\n".encode()
    hostile = _with_copied_signature(ref, releases, hostile_tar((path, "file", config)), "1.0.1")

    checked = run_cli("verify", hostile, "--key", f"{key}.pub", "--only", "model-signature")
    assert checked.returncode == 1 and path in checked.stderr, checked.stdout + checked.stderr
    assert checked.stderr.count("\n") == 1

    repo = ref.rsplit(":", 1)[0]
    policy = run_cli("policy", "set", repo, "prod", "--require", f"model-signature:{key}.pub")
    assert policy.returncode == 0, policy.stderr
    promoted = run_cli("promote", hostile, "prod")
    assert promoted.returncode != 0 and "model-signature" in promoted.stderr, promoted.stderr
    assert path in promoted.stderr

    dest = tmp_path / "dest"
    unpacked = run_cli("unpack", hostile, str(dest))
    assert unpacked.returncode == 2 and "refused tar member" in unpacked.stderr, unpacked.stderr
    assert not dest.exists() and not marker.exists()
