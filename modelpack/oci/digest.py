"""Digests: parsing, validating and computing `sha256:<hex>` strings, streaming and in constant memory."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import BinaryIO

from modelpack.errors import DigestMismatchError, UsageError

# The OCI grammar allows more algorithms; we only produce and accept sha256 (and sha512 for reading).
_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
CHUNK = 1 << 20


def validate(digest: str) -> str:
    """Return `digest` if well formed, else raise a UsageError naming it."""
    if not _DIGEST_RE.match(digest):
        raise UsageError(
            f"malformed digest {digest!r}", hint="expected sha256: followed by 64 lowercase hex characters"
        )
    return digest


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.match(value))


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_part(digest: str) -> str:
    return digest.split(":", 1)[1]


def hasher_for(digest: str) -> hashlib._Hash:
    algorithm = digest.split(":", 1)[0]
    return hashlib.new(algorithm)


def of_stream(stream: BinaryIO, chunk: int = CHUNK) -> tuple[str, int]:
    """sha256 and byte count of a stream, read in fixed chunks."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    while True:
        n = stream.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        h.update(view[:n])
        size += n
    return "sha256:" + h.hexdigest(), size


def of_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for c in chunks:
        h.update(c)
        size += len(c)
    return "sha256:" + h.hexdigest(), size


class Verifier:
    """Hashes bytes as they pass and checks them against an expected digest and size at the end."""

    def __init__(self, expected: str, expected_size: int | None = None, what: str = "content") -> None:
        self.expected = validate(expected)
        self.expected_size = expected_size
        self.what = what
        self._h = hasher_for(expected)
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatchError(
                f"{self.what} is larger than its descriptor says ({self.expected_size} bytes); refused"
            )
        self._h.update(data)

    def check(self) -> None:
        actual = f"{self.expected.split(':', 1)[0]}:{self._h.hexdigest()}"
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatchError(
                f"{self.what} has {self.size} bytes, its descriptor says {self.expected_size}; refused"
            )
        if actual != self.expected:
            raise DigestMismatchError(f"{self.what} hashes to {actual}, expected {self.expected}; refused")
