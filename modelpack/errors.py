"""The error tree. Every error a user can cause or meet carries an exit code and a message they can act on.

Exit codes: 1 = the operation failed (network, registry refused, test failed), 2 = usage or input error
(bad reference, invalid modelpack.yaml, missing file), 3 = the test could not run (no engine, a container
that exited before ready, an image pull failed). The CLI is the one boundary that turns these into
`error: <message>` on stderr; everything below raises.
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


class TestFailedError(ModelpackError):
    """A release failed one of its golden cases or gates."""

    exit_code = 1
    __test__ = False  # not a pytest class


class PromotionError(ModelpackError):
    """A promotion or rollback was refused or lost a race."""

    exit_code = 1


class TestNotRunError(ModelpackError):
    """The test could not run (no engine, a container that exited before ready, an image pull failed)."""

    exit_code = 3
    __test__ = False  # not a pytest class
