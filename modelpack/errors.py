"""The error tree. Every error a user can cause or meet carries an exit code and a message they can act on.

    ModelpackError                  exit 1 unless said otherwise
    ├── UsageError                  exit 2  a malformed request: a bad reference, flag combination, value
    ├── InputError                  exit 2  a wrong input file or value: modelpack.yaml, a lockfile, a path
    ├── NotFoundError               exit 1  a repository, tag, manifest or blob is not where it was looked for
    ├── ContentError                exit 1  content read from a registry, layout or store is malformed
    │   └── (release.view.NotAReleaseError: a manifest that is no modelpack release)
    ├── DigestMismatchError         exit 1  content did not hash to the digest that named it; nothing kept
    ├── RegistryError               exit 1  a registry answered with an error, or could not be reached
    │   └── AuthError                       credentials refused, or none for that registry
    ├── StoreError                  exit 1  the local store is unreadable, inconsistent, or busy
    ├── BuildError                  exit 1  a build could not complete (no wheel, a Docker build failed)
    ├── RefusedError                exit 1  the release model forbids it: a version tag that names another
    │                                       digest, an environment moved outside promote/rollback
    ├── PromotionError              exit 1  a promotion or rollback was refused or lost a race
    ├── VerificationError           exit 1  a signature or attestation is missing, tampered with, over
    │                                       another digest, or by a key that was not asked for
    ├── DeployError                 exit 1  a deployment could not be made (no engine, the proxy's port in
    │                                       use, a release never ready, a policy not met); what ran before
    │                                       keeps serving
    ├── TestFailedError             exit 1  the release failed its golden cases or gates
    └── TestNotRunError             exit 3  the test could not run: no engine, the container exited before
                                            ready, the image could not be pulled (a broken runner, not a
                                            bad model: CI can tell them apart)

The CLI is the one boundary that turns these into `error: <message>` on stderr; everything below raises.
Anything else reaching it is a bug and is reported as "internal error" (exit 1). Errors that are not a
user's fault but a bug in modelpack are never one of these classes.
"""

from __future__ import annotations


class ModelpackError(Exception):
    """Base of every error modelpack raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(ModelpackError):
    """The caller asked for something malformed: a bad reference, a bad flag combination."""

    exit_code = 2


class InputError(ModelpackError):
    """An input file or value is wrong: modelpack.yaml, a lockfile, a missing model file."""

    exit_code = 2


class NotFoundError(ModelpackError):
    """A repository, tag, manifest or blob does not exist where it was looked for."""

    exit_code = 1


class RegistryError(ModelpackError):
    """A registry answered with an error, or could not be reached."""

    exit_code = 1


class AuthError(RegistryError):
    """A registry refused our credentials, or we have none for it."""


class DigestMismatchError(ModelpackError):
    """Content did not hash to the digest that named it. Nothing was kept."""

    exit_code = 1


class StoreError(ModelpackError):
    """The local OCI layout store is unreadable or inconsistent."""

    exit_code = 1


class BuildError(ModelpackError):
    """A build could not complete: no wheel for the platform, a Docker build failed."""

    exit_code = 1


class ContentError(ModelpackError):
    """Content read from a registry, layout or store is malformed: not JSON, wrong fields, over a cap."""

    exit_code = 1


class RefusedError(ModelpackError):
    """The release model forbids the operation: versions are immutable, environments move only through
    promote and rollback."""

    exit_code = 1


class TestFailedError(ModelpackError):
    """A release failed one of its golden cases or gates."""

    exit_code = 1
    __test__ = False  # not a pytest class


class PromotionError(ModelpackError):
    """A promotion or rollback was refused or lost a race."""

    exit_code = 1


class VerificationError(ModelpackError):
    """A signature or attestation on a release does not verify, or is not there when it must be."""

    exit_code = 1


class DeployError(ModelpackError):
    """A deployment step could not be made; the releases that served before keep serving."""

    exit_code = 1


class TestNotRunError(ModelpackError):
    """The test could not run (no engine, a container that exited before ready, an image pull failed)."""

    exit_code = 3
    __test__ = False  # not a pytest class
