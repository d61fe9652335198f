"""Blob download as a stream that survives a torn connection: it resumes with a `Range` request.

Used for pulls (wrapped in a digest Verifier by the caller) and as the re-readable source of a
registry-to-registry copy, where `open_at(offset)` is a ranged GET.
"""

from __future__ import annotations

import logging
from collections.abc import Generator

import httpx

from modelpack.errors import RegistryError
from modelpack.oci.model import Descriptor
from modelpack.registry.auth import repository_scope
from modelpack.registry.transport import RegistryClient

log = logging.getLogger("modelpack.registry")
STREAM_CHUNK = 1 << 20
MAX_RESUMES = 5


def iter_blob(
    client: RegistryClient, repository: str, desc: Descriptor, start: int = 0, max_resumes: int = MAX_RESUMES
) -> Generator[bytes, None, None]:
    """The blob's bytes from `start` to its end, as sent (the caller verifies the digest)."""
    where = f"{client.registry}/{repository}"
    offset, resumes = start, 0
    while True:
        headers = {"Range": f"bytes={offset}-"} if offset else None
        response = client.send(
            "GET",
            f"/v2/{repository}/blobs/{desc.digest}",
            scopes=[repository_scope(repository, "pull")],
            headers=headers,
            stream=True,
        )
        try:
            skip = _check(client, response, desc, offset, where)
            # Unbuffered: whatever arrived before a tear counts, so the resume asks for less.
            for chunk in response.iter_bytes():
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                offset += len(chunk)
                yield chunk
            return
        except httpx.TransportError as e:
            resumes += 1
            if resumes > max_resumes or offset >= desc.size:
                raise client.transport_error(e) from None
            log.debug("download of %s broke at %d of %d; resuming", desc.digest, offset, desc.size)
        finally:
            response.close()


def _check(
    client: RegistryClient, response: httpx.Response, desc: Descriptor, offset: int, where: str
) -> int:
    """How many leading bytes of this response to drop (a registry that ignores Range sends it all)."""
    if response.status_code == 200:
        return offset
    if response.status_code == 206:
        got = response.headers.get("content-range", "")
        if not got.startswith(f"bytes {offset}-"):
            raise RegistryError(f"blob {desc.digest} in {where}: asked for bytes from {offset}, got {got!r}")
        return 0
    client.read_body(response)
    raise client.status_error(response, f"blob {desc.digest}", where)
