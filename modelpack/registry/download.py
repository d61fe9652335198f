"""Blob download as a stream that survives a torn connection: it resumes with a `Range` request.

Used for pulls (wrapped in a digest Verifier by the caller), as the re-readable source of a
registry-to-registry copy, where `open_at(offset)` is a ranged GET, and for one piece of a parallel
ranged download (ranged.py), where `end` bounds the request.
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
MAX_RESUMES = 5


def request_blob(
    client: RegistryClient, repository: str, desc: Descriptor, start: int = 0, end: int | None = None
) -> httpx.Response:
    """The streamed answer to a GET of the blob's bytes `[start, end)` (to its end without `end`)."""
    headers = None
    if end is not None and (start or end < desc.size):
        headers = {"Range": f"bytes={start}-{end - 1}"}
    elif start:
        headers = {"Range": f"bytes={start}-"}
    return client.send(
        "GET",
        f"/v2/{repository}/blobs/{desc.digest}",
        scopes=[repository_scope(repository, "pull")],
        headers=headers,
        stream=True,
    )


def iter_blob(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    start: int = 0,
    max_resumes: int = MAX_RESUMES,
    *,
    end: int | None = None,
    first: httpx.Response | None = None,
) -> Generator[bytes, None, None]:
    """The blob's bytes from `start` to `end` (default: its end), as sent (the caller verifies the digest).

    `first` is the answer to the first request when the caller sent it already (to read its status)."""
    where = f"{client.registry}/{repository}"
    stop = desc.size if end is None else end
    offset, resumes = start, 0
    response = first
    while True:
        if response is None:
            response = request_blob(client, repository, desc, offset, end)
        try:
            skip = _check(client, response, desc, offset, where)
            # Unbuffered: whatever arrived before a tear counts, so the resume asks for less.
            for chunk in response.iter_bytes():
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                if end is not None and offset + len(chunk) > stop:
                    # A registry that ignores Range sends on past the piece: stop at its end (a 206 ends
                    # exactly there, and is read to its end so its connection goes back to the pool).
                    if offset < stop:
                        yield chunk[: stop - offset]
                    return
                if not chunk:
                    continue
                offset += len(chunk)
                yield chunk
            if end is None or offset >= stop:
                return
            raise httpx.ReadError(f"answer ended at byte {offset} of the range asked up to {stop}")
        except httpx.TransportError as e:
            resumes += 1
            if resumes > max_resumes or offset >= stop:
                raise client.transport_error(e) from None
            log.debug("download of %s broke at %d of %d; resuming", desc.digest, offset, stop)
        finally:
            response.close()
            response = None


def serves_ranges(response: httpx.Response) -> bool:
    """Whether the answer to a ranged GET honoured the range (a 206); a 200 is the whole blob."""
    return response.status_code == 206


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
