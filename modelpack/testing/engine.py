"""Getting a release's serving image into a Docker engine, and out again when the test is over.

A registry reference is pulled by digest. A release in the local store (or an OCI layout) is loaded: a
docker-archive (manifest.json, the config, one `layer.tar` per layer) is streamed from the store's blobs
to the engine's image load API, so no registry is needed for the release itself. The base image's layers
are not in the store (the builder leaves them in the base image's registry), so they are read from there
through the registry client; docker load accepts them gzip-compressed as they are.

Either way, an image the engine did not have before is removed afterwards: a test leaves the engine as it
found it. Everything that goes wrong here means the test could not run (TestNotRunError, exit 3).
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from modelpack.errors import ModelpackError, TestNotRunError
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.target import Target

BLOCK = tarfile.BLOCKSIZE


def engine_client() -> Any:
    """A docker SDK client for DOCKER_HOST (or the default socket); TestNotRunError when none answers."""
    try:
        import docker

        client = docker.from_env(version="auto", timeout=300)
        client.ping()
    except Exception as e:  # no SDK, no socket, refused: all mean the engine cannot run the test
        raise TestNotRunError(
            f"no Docker engine answers ({type(e).__name__}: {e})",
            hint="start one, set DOCKER_HOST, or run with --runtime local",
        ) from None
    return client


def _image_ids(client: Any) -> set[str]:
    return {str(i.id) for i in client.images.list(all=True)}


@contextmanager
def pulled(client: Any, pinned: str) -> Iterator[str]:
    """`pinned` (NAME@DIGEST) present in the engine for the body; removed after if it was pulled here."""
    try:
        client.images.get(pinned)
        had = True
    except Exception:  # ImageNotFound, or an engine that cannot say: pull, and clean up after
        had = False
    if not had:
        try:
            client.images.pull(pinned)
        except Exception as e:  # the SDK raises APIError, NotFound, connection errors
            raise TestNotRunError(
                f"the Docker engine could not pull {pinned}: {type(e).__name__}: {e}",
                hint="check that the engine can reach the registry (and trusts it, for plain HTTP)",
            ) from None
    try:
        yield pinned
    finally:
        if not had:
            with contextlib.suppress(Exception):  # in use elsewhere, or already gone: leave it be
                client.images.remove(pinned)


@contextmanager
def loaded(
    client: Any,
    target: Target,
    image_digest: str,
    bases: Sequence[Target],
    info: Callable[[str], None] = lambda _m: None,
) -> Iterator[str]:
    """The image manifest `image_digest` of `target` loaded into the engine; yields its image ID."""
    raw = target.get_manifest(image_digest)
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Manifest):
        raise TestNotRunError(f"{image_digest} in {target.describe()} is not an image manifest")
    before = _image_ids(client)
    image_id = doc.config.digest  # the classic image store's ID: the config digest
    if image_id in before:
        info(f"image {image_id[:19]} is already in the Docker engine: not loading it")
        yield image_id
        return
    sources = _sources(target, doc, bases)
    size = sum(d.size for d in doc.layers) / 1e6
    info(f"loading {image_digest[:19]} into the Docker engine ({len(doc.layers)} layers, {size:.1f} MB)")
    try:
        images = client.images.load(_archive(doc, sources))
    except ModelpackError as e:  # a blob the store or the base registry could not give
        raise TestNotRunError(f"could not load {image_digest} into the Docker engine: {e}") from None
    except Exception as e:  # the engine refused the archive
        raise TestNotRunError(
            f"the Docker engine refused to load {image_digest}: {type(e).__name__}: {e}"
        ) from None
    ids = [str(i.id) for i in images]
    if not ids:
        raise TestNotRunError(f"the Docker engine loaded {image_digest} but named no image")
    try:
        yield ids[0]
    finally:
        for loaded_id in ids:
            if loaded_id not in before:
                with contextlib.suppress(Exception):
                    client.images.remove(loaded_id)


def _sources(target: Target, doc: Manifest, bases: Sequence[Target]) -> dict[str, Target]:
    """Which target holds each blob, asked before streaming so a missing base is a clear error."""
    found: dict[str, Target] = {}
    for desc in (doc.config, *doc.layers):
        if desc.digest in found:
            continue
        try:
            holder = next((t for t in (target, *bases) if t.has_blob(desc.digest)), None)
        except ModelpackError as e:  # the base image's registry did not answer
            raise TestNotRunError(f"could not read the base image's layers: {e}") from None
        if holder is None:
            where = ", ".join(t.describe() for t in bases) or "no base image named by the release"
            raise TestNotRunError(
                f"layer {desc.digest} is neither in {target.describe()} nor in its base ({where})",
                hint="check that the base image is still in its registry, or push the release and test that",
            )
        found[desc.digest] = holder
    return found


def _archive(doc: Manifest, sources: dict[str, Target]) -> Iterator[bytes]:
    """A docker-archive as a stream of chunks: each member's header, its bytes, padding; no temp file."""
    config = f"{doc.config.digest.split(':', 1)[1]}.json"
    paths = [f"{d.digest.split(':', 1)[1]}/layer.tar" for d in doc.layers]
    manifest = json.dumps([{"Config": config, "RepoTags": None, "Layers": paths}]).encode()
    yield from _member("manifest.json", len(manifest), iter([manifest]))
    yield from _blob(config, doc.config, sources)
    written: set[str] = set()
    for path, desc in zip(paths, doc.layers, strict=True):
        if path not in written:  # a layer listed twice is one file, like docker save writes it
            written.add(path)
            yield from _blob(path, desc, sources)
    yield b"\0" * (2 * BLOCK)


def _blob(name: str, desc: Descriptor, sources: dict[str, Target]) -> Iterator[bytes]:
    with sources[desc.digest].read_blob(desc) as chunks:
        yield from _member(name, desc.size, chunks)


def _member(name: str, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        yield chunk
    if sent != size:  # a short blob would shift every later member: refuse rather than send garbage
        raise TestNotRunError(f"{name}: read {sent} bytes, the manifest says {size}")
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)
