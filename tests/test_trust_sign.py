"""Signing a release and checking it: modelpack's own verify, then the independent verifiers on what it
wrote: `model_signing` on the unpacked folder (OpenSSF model signature) and `@sigstore/verify` on the
release signature (cosign's statement in a Sigstore bundle), each with the public key only."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import model_signing
import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.signed import (
    Built,
    built,
    model_signing_verify,
    open_target,
    pushed_copy,
    release_signature_bytes,
    sigstore_verify,
)


@pytest.fixture
def releases(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return built(tmp_path_factory)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    made = run_cli("keygen", str(tmp_path / "release"), "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert stat.S_IMODE(os.stat(doc["privateKey"]).st_mode) == 0o600
    return tmp_path / "release"


def test_sign_then_verify_prints_the_chain(
    registry: RegistryProcess, releases: Built, key: Path, tmp_path: Path
) -> None:
    ref, digest = pushed_copy(releases, registry.host, releases.index_tag)
    signed = run_cli("sign", ref, "--key", f"{key}.key", "--json")
    assert signed.returncode == 0, signed.stderr
    doc = json.loads(signed.stdout)
    assert doc["digest"] == digest and doc["bundle"] != digest  # an index: two subjects
    assert doc["releaseSignature"] and doc["modelSignature"] and doc["files"] >= 3

    checked = run_cli("verify", ref, "--key", f"{key}.pub")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0].startswith(ref) and digest in lines[0]
    keyid = doc["keyid"][:12]
    assert any(f"release signed by {keyid}" in line and "ok" in line for line in lines)
    assert any("model-signature" in line and f"model signed by {keyid}" in line for line in lines)

    as_json = run_cli("verify", ref, "--key", f"{key}.pub", "--json")
    assert as_json.returncode == 0
    verdict = json.loads(as_json.stdout)
    mine = [c for c in verdict["checks"] if c["kind"] in ("signature", "model-signature")]
    assert verdict["ok"] is True and len(mine) == 2
    assert all(c["ok"] and c["signer"] == doc["keyid"] and c["evidence"] for c in mine)

    shown = run_cli("inspect", ref)
    assert shown.returncode == 0, shown.stderr
    assert f"release by {keyid}, model by {keyid}" in shown.stdout
    listed = json.loads(run_cli("inspect", ref, "--json").stdout)["signatures"]
    assert [(s["kind"], s["keyid"]) for s in listed] == [("release", doc["keyid"]), ("model", doc["keyid"])]

    unchecked = run_cli("verify", ref)
    assert unchecked.returncode == 1
    assert "not checked, pass --key" in unchecked.stderr and len(unchecked.stderr.strip().splitlines()) == 1


def test_a_key_from_the_environment_or_stdin_signs_a_bundle_only_release(
    registry: RegistryProcess, releases: Built, key: Path
) -> None:
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    pem = Path(f"{key}.key").read_text()
    by_env = run_cli("sign", ref, "--key", "env://MODELPACK_SIGNING_KEY", env={"MODELPACK_SIGNING_KEY": pem})
    assert by_env.returncode == 0, by_env.stderr
    by_stdin = run_cli("sign", ref, "--key", "-", "--no-model", stdin=pem)
    assert by_stdin.returncode == 0, by_stdin.stderr
    checked = run_cli("verify", ref, "--key", f"{key}.pub", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_encrypted_key_signs_with_its_password(
    registry: RegistryProcess, releases: Built, tmp_path: Path
) -> None:
    env = {"MODELPACK_KEY_PASSWORD": "correct horse"}
    made = run_cli("keygen", str(tmp_path / "locked"), "--encrypt", env=env)
    assert made.returncode == 0, made.stderr
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "locked.key").read_bytes()
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    signed = run_cli("sign", ref, "--key", str(tmp_path / "locked.key"), env=env)
    assert signed.returncode == 0, signed.stderr
    assert run_cli("verify", ref, "--key", str(tmp_path / "locked.pub")).returncode == 0


def test_unpacked_folder_passes_model_signing_and_fails_after_one_byte_changes(
    registry: RegistryProcess, releases: Built, key: Path, tmp_path: Path
) -> None:
    ref, _ = pushed_copy(releases, registry.host, releases.index_tag)
    assert run_cli("sign", ref, "--key", f"{key}.key").returncode == 0
    dest = tmp_path / "unpacked"
    unpacked = run_cli("unpack", ref, str(dest), "--json")
    assert unpacked.returncode == 0, unpacked.stderr
    assert "model.sig" in json.loads(unpacked.stdout)["files"]

    ok = model_signing_verify(dest, Path(f"{key}.pub"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # and its Python API, the other documented way in
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=f"{key}.pub").verify(
        dest, dest / "model.sig"
    )

    weights = next(p for p in sorted((dest / "models").rglob("*")) if p.is_file())
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    refused = model_signing_verify(dest, Path(f"{key}.pub"))
    assert refused.returncode != 0
    assert weights.relative_to(dest).as_posix() in refused.stdout + refused.stderr
    with pytest.raises(ValueError, match="Hash mismatch"):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=f"{key}.pub").verify(
            dest, dest / "model.sig"
        )


def test_a_filtered_unpack_writes_no_signature_it_could_not_pass(
    registry: RegistryProcess, releases: Built, key: Path, tmp_path: Path
) -> None:
    ref, _ = pushed_copy(releases, registry.host, releases.bundle_tag)
    assert run_cli("sign", ref, "--key", f"{key}.key").returncode == 0
    assert run_cli("unpack", ref, str(tmp_path / "part"), "--filter", "model").returncode == 0
    assert not (tmp_path / "part" / "model.sig").exists()


def test_sigstore_verify_accepts_the_release_signature_and_refuses_a_tampered_one(
    registry: RegistryProcess, releases: Built, key: Path, tmp_path: Path
) -> None:
    ref, digest = pushed_copy(releases, registry.host, releases.index_tag)
    assert run_cli("sign", ref, "--key", f"{key}.key", "--no-model").returncode == 0
    targets, target = open_target(releases, ref)
    with targets:
        raw = release_signature_bytes(target, digest)
    bundle = tmp_path / "release.sigstore.json"
    bundle.write_bytes(raw)
    accepted = sigstore_verify(bundle, Path(f"{key}.pub"), digest)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.strip() == "verified"

    # the same bundle with its statement moved to another digest, signature kept: refused
    doc = json.loads(raw)
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered = tmp_path / "tampered.sigstore.json"
    tampered.write_text(json.dumps(doc))
    refused = sigstore_verify(tampered, Path(f"{key}.pub"), digest)
    assert refused.returncode == 1 and "signature verification failed" in refused.stdout

    other = run_cli("keygen", str(tmp_path / "other"))
    assert other.returncode == 0
    wrong_key = sigstore_verify(bundle, tmp_path / "other.pub", digest)
    assert wrong_key.returncode == 1 and "signature verification failed" in wrong_key.stdout
    other_digest = sigstore_verify(bundle, Path(f"{key}.pub"), "sha256:" + "1" * 64)
    assert other_digest.returncode == 1 and "not over" in other_digest.stdout


def test_signatures_travel_with_copy_referrers_and_verify_offline(
    registry: RegistryProcess, releases: Built, key: Path, tmp_path: Path
) -> None:
    ref, digest = pushed_copy(releases, registry.host, releases.index_tag)
    assert run_cli("sign", ref, "--key", f"{key}.key").returncode == 0
    mirror = f"oci:{tmp_path / 'mirror'}:1.0.0"
    copied = run_cli("copy", ref, mirror, "--referrers")
    assert copied.returncode == 0, copied.stderr
    checked = run_cli("verify", mirror, "--key", f"{key}.pub", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["digest"] == digest
    dest = tmp_path / "from-mirror"
    assert run_cli("unpack", mirror, str(dest)).returncode == 0
    ok = model_signing_verify(dest, Path(f"{key}.pub"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
