"""ECDSA P-256 signing keys: generate, load from a file, an environment variable or stdin, sign, verify.

Where a key comes from (`--key`): a path; `env://NAME`, the PEM in an environment variable (CI secrets,
cosign's spelling); `-`, the PEM on stdin. An encrypted private key takes its password from
`MODELPACK_KEY_PASSWORD` (the CLI prompts on a terminal). Everything that goes wrong is one `InputError`
line naming the source, never the key material or the password.

Signatures are DER-encoded ECDSA over SHA-256 of the message, the encoding cosign, DSSE libraries and
`@sigstore/verify` read.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelpack.errors import InputError

PASSWORD_ENV = "MODELPACK_KEY_PASSWORD"
MAX_KEY_BYTES = 64 * 1024  # a PEM key is < 1 KiB; anything larger is not a key
_SIG = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True)
class PublicKey:
    key: ec.EllipticCurvePublicKey
    source: str  # where it was read from, for messages

    @property
    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def keyid(self) -> str:
        """sha256 hex of the public PEM: model-signing's key hint, so both name a key the same way."""
        return hashlib.sha256(self.pem).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.key.verify(signature, message, _SIG)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    key: ec.EllipticCurvePrivateKey
    source: str

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key(), self.source)

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message, _SIG)

    def pem(self) -> bytes:
        """The unencrypted PKCS#8 PEM, for libraries that read a key from a file (model-signing)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path
    keyid: str


def generate(prefix: Path, password: bytes | None = None) -> KeyFiles:
    """Writes PREFIX.key (PKCS#8 PEM, mode 0600, encrypted when `password`) and PREFIX.pub. Refuses to
    replace an existing key: losing a signing key is not undoable."""
    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private, public):
        if path.exists():
            raise InputError(f"{path} already exists: keygen never replaces a key; pick another path")
    if not private.parent.is_dir():
        raise InputError(f"{private.parent} is not a directory: create it first")
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    _write_new(private, pem, 0o600)
    pub = PrivateKey(key, str(private)).public
    _write_new(public, pub.pem, 0o644)
    return KeyFiles(private, public, pub.keyid)


def load_private(
    source: str,
    *,
    env: Mapping[str, str] | None = None,
    stdin: Callable[[], bytes] | None = None,
    password: bytes | None = None,
) -> PrivateKey:
    """The private key named by `source` (a path, `env://NAME` or `-`). The password, when the key is
    encrypted: `password`, else $MODELPACK_KEY_PASSWORD."""
    env = os.environ if env is None else env
    data, where = _read(source, env, stdin)
    if password is None and env.get(PASSWORD_ENV):
        password = env[PASSWORD_ENV].encode()
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError as e:
        if "encrypted" in str(e) and password is None:
            raise InputError(
                f"{where} is encrypted: set {PASSWORD_ENV} (or type it at the prompt on a terminal)"
            ) from None
        raise InputError(f"{where} is not encrypted but a password was given: drop {PASSWORD_ENV}") from None
    except (ValueError, UnsupportedAlgorithm):
        if password is not None and b"ENCRYPTED" in data:
            raise InputError(f"{where}: wrong password") from None
        raise InputError(f"{where} is not a PEM private key: make one with `modelpack keygen PATH`") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"{where} is not an ECDSA key: make one with `modelpack keygen PATH`")
    _check_curve(key.public_key(), where)
    return PrivateKey(key, where)


def load_public(source: str, *, env: Mapping[str, str] | None = None) -> PublicKey:
    """The public key named by `source` (a path or `env://NAME`); a private key file is refused, so
    nobody hands a secret to a command that only needs to check."""
    data, where = _read(source, os.environ if env is None else env, None)
    if b"PRIVATE KEY" in data:
        raise InputError(f"{where} is a private key: pass the .pub file to verify")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"{where} is not a PEM public key (the .pub `modelpack keygen` wrote)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InputError(f"{where} is not an ECDSA public key: use the .pub `modelpack keygen` wrote")
    _check_curve(key, where)
    return PublicKey(key, where)


def _check_curve(key: ec.EllipticCurvePublicKey, where: str) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise InputError(f"{where} is on {key.curve.name}, not P-256: make one with `modelpack keygen PATH`")


def _read(source: str, env: Mapping[str, str], stdin: Callable[[], bytes] | None) -> tuple[bytes, str]:
    if source.startswith("env://"):
        name = source[len("env://") :]
        if not name or name not in env:
            raise InputError(f"--key {source}: environment variable {name or '(empty)'} is not set")
        return env[name].encode(), f"key in ${name}"
    if source == "-":
        data = (stdin or sys.stdin.buffer.read)()
        if not data:
            raise InputError("--key -: nothing on stdin (pipe the PEM key in)")
        return data[:MAX_KEY_BYTES], "key on stdin"
    path = Path(source)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"key file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"key file {path} is a directory") from None
    except OSError as e:
        raise InputError(f"key file {path} cannot be read: {e.strerror}") from None
    if len(data) > MAX_KEY_BYTES:
        raise InputError(f"key file {path} is over {MAX_KEY_BYTES // 1024} KiB: not a key")
    return data, f"key file {path}"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never follow or replace something that appeared since the check; mode set at creation, so a
    # private key is never readable by others even for an instant
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
