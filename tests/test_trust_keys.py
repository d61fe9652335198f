"""Signing keys and DSSE envelopes: what a wrong key, a wrong password, a tampered payload look like."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelpack.errors import InputError
from modelpack.trust import dsse, keys


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    files = keys.generate(tmp_path / "release", b"secret")
    assert stat.S_IMODE(os.stat(files.private).st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in files.private.read_bytes()
    assert keys.load_public(str(files.public)).keyid == files.keyid
    with pytest.raises(InputError, match="never replaces"):
        keys.generate(tmp_path / "release")


def test_a_key_loads_from_a_file_an_environment_variable_or_stdin(tmp_path: Path) -> None:
    files = keys.generate(tmp_path / "ci")
    pem = files.private.read_text()
    from_file = keys.load_private(str(files.private), env={})
    from_env = keys.load_private("env://SIGNING_KEY", env={"SIGNING_KEY": pem})
    from_stdin = keys.load_private("-", env={}, stdin=pem.encode)
    assert {k.public.keyid for k in (from_file, from_env, from_stdin)} == {files.keyid}
    with pytest.raises(InputError, match=r"SIGNING_KEY is not set"):
        keys.load_private("env://SIGNING_KEY", env={})


@pytest.mark.parametrize(
    ("password_env", "message"),
    [
        ({}, "is encrypted: set MODELPACK_KEY_PASSWORD"),
        ({"MODELPACK_KEY_PASSWORD": "nope"}, "wrong password"),
    ],
)
def test_an_encrypted_key_needs_its_password(
    tmp_path: Path, password_env: dict[str, str], message: str
) -> None:
    files = keys.generate(tmp_path / "k", b"right")
    with pytest.raises(InputError, match=message) as err:
        keys.load_private(str(files.private), env=password_env)
    assert "right" not in str(err.value) and "nope" not in str(err.value)
    assert keys.load_private(str(files.private), env={"MODELPACK_KEY_PASSWORD": "right"})


def test_what_is_not_a_p256_key_is_one_line(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "p384.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "junk.key").write_text("hello\n")
    (tmp_path / "huge.key").write_bytes(b"x" * (keys.MAX_KEY_BYTES + 10))
    for name, message in [
        ("p384.key", "not P-256"),
        ("junk.key", "not a PEM private key"),
        ("huge.key", "over 64 KiB"),
        ("absent.key", "does not exist"),
    ]:
        with pytest.raises(InputError, match=message):
            keys.load_private(str(tmp_path / name), env={})
    with pytest.raises(InputError, match="is a private key"):
        keys.load_public(str(tmp_path / "p384.key"))


def test_dsse_verifies_only_the_signed_payload_and_only_by_the_signing_key(tmp_path: Path) -> None:
    signer = keys.load_private(str(keys.generate(tmp_path / "a").private), env={})
    stranger = keys.load_private(str(keys.generate(tmp_path / "b").private), env={})
    envelope = dsse.seal(b'{"subject": "sha256:aa"}', signer)

    opened = dsse.open_envelope(envelope, [signer.public, stranger.public])
    assert opened.verified_by == (signer.public.keyid,)
    assert opened.statement() == {"subject": "sha256:aa"}

    tampered = {**envelope, "payload": base64.b64encode(b'{"subject": "sha256:bb"}').decode()}
    assert dsse.open_envelope(tampered, [signer.public]).verified_by == ()
    # the keyid is a claim, not a proof: a stranger's key named by the right keyid verifies nothing
    assert dsse.open_envelope(envelope, [stranger.public]).verified_by == ()
    assert dsse.open_envelope(dsse.seal(b"{}", None), [signer.public]).keyids == ()
