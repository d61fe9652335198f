"""`keygen`, `sign` and `verify`: signing keys, the release and model signatures, and the chain of checks.

Every trust fault exits 1 with one line, a key that cannot be used included (keys.py says why in the
InputError it raises; here it becomes a VerificationError), so a CI step tests one exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import InputError, UsageError, VerificationError
from modelpack.evidence import attestations, signatures
from modelpack.oci.target import ProgressFn, no_progress
from modelpack.release.view import load_release
from modelpack.targets import Targets
from modelpack.trust import keys
from modelpack.trust.check import Check

__all__ = ["KeygenResult", "SignResult", "VerifyResult", "keygen", "sign", "verify"]


@dataclass(frozen=True)
class KeygenResult:
    private_key: Path
    public_key: Path
    keyid: str
    encrypted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "privateKey": str(self.private_key),
            "publicKey": str(self.public_key),
            "keyid": self.keyid,
            "encrypted": self.encrypted,
        }


@dataclass(frozen=True)
class SignResult:
    reference: str
    digest: str  # the release (index) digest the release signature is over
    bundle: str  # the bundle manifest digest the model signature is attached to
    keyid: str
    signed: signatures.Signed

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "bundle": self.bundle,
            "keyid": self.keyid,
            **self.signed.to_json(),
        }


@dataclass(frozen=True)
class VerifyResult:
    reference: str
    digest: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
        }


# the links of a release's chain, in the order verify checks and prints them
CHAIN = ("signature", "model-signature", "test", "provenance", "sbom")


def keygen(prefix: Path, password: bytes | None = None) -> KeygenResult:
    """Writes PREFIX.key (mode 0600; encrypted when `password`) and PREFIX.pub: an ECDSA P-256 pair."""
    made = keys.generate(prefix, password)
    return KeygenResult(made.private, made.public, made.keyid, bool(password))


def sign(
    targets: Targets,
    reference: str,
    key: str,
    *,
    release_signature: bool = True,
    model_signature: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: Callable[[], bytes] | None = None,
    password: bytes | None = None,
    progress: ProgressFn = no_progress,
) -> SignResult:
    """Signs the release `reference` with the private key `key` (a path, `env://NAME` or `-` for stdin):
    the release signature over its digest, and the model signature over its bundle's files."""
    if not (release_signature or model_signature):
        raise VerificationError("nothing to sign: both the release and the model signature were turned off")
    private = _private(key, env, stdin, password)
    where = targets.open(reference)
    release = load_release(where.target, where.need_ref("sign"), where=where.display)
    signed = signatures.sign(
        where.target,
        release,
        private,
        name=where.repository,
        release_signature=release_signature,
        model_signature=model_signature,
        progress=progress,
    )
    return SignResult(where.display, release.digest, release.bundle.digest, private.public.keyid, signed)


def verify(
    targets: Targets,
    reference: str,
    key_sources: Sequence[str] = (),
    *,
    local: bool = False,
    only: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    progress: ProgressFn = no_progress,
) -> VerifyResult:
    """Checks every signature and attestation on the release `reference` against the public keys
    `key_sources`; the result lists each check (never raises for a failed one: the caller decides)."""
    unknown = sorted(set(only) - set(CHAIN))
    if unknown:
        raise UsageError(f"--only {','.join(unknown)}: choose from {', '.join(CHAIN)}")
    wanted = [k for k in CHAIN if not only or k in only]
    public = [_public(s, env) for s in key_sources]
    where = targets.open(reference, local=local)
    release = load_release(where.target, where.need_ref("verify"), layers=False, where=where.display)
    target, digest = where.target, release.digest
    run: dict[str, Callable[[], Check]] = {
        "signature": lambda: signatures.verify_release_signature(target, digest, public),
        "model-signature": lambda: signatures.verify_model_signature(
            target, release.bundle.digest, public, progress
        ),
        "test": lambda: attestations.check_test_evidence(target, digest, public),
        "provenance": lambda: attestations.check_provenance(target, digest, public),
        "sbom": lambda: attestations.check_sbom(target, digest),
    }
    return VerifyResult(where.display, digest, tuple(run[k]() for k in wanted))


def _private(
    source: str, env: Mapping[str, str] | None, stdin: Callable[[], bytes] | None, password: bytes | None
) -> keys.PrivateKey:
    try:
        return keys.load_private(source, env=env, stdin=stdin, password=password)
    except InputError as e:
        raise VerificationError(e.message, hint=e.hint) from None


def _public(source: str, env: Mapping[str, str] | None) -> keys.PublicKey:
    try:
        return keys.load_public(source, env=env)
    except InputError as e:
        raise VerificationError(e.message, hint=e.hint) from None
