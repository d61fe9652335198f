"""An image out of a Docker engine into the local store, as OCI blobs: `docker save` read as a stream.

docker 20.10 saves a docker-archive: `manifest.json` (config file name, layer paths), the config JSON, and
one uncompressed `layer.tar` per layer (a symlink to an earlier one when two layers have the same
content). Each layer tar becomes an OCI uncompressed layer blob as it is: its digest is its diff ID, which
the config already lists, so the config blob is kept byte for byte. The archive lists manifest.json last,
so layers are spooled to the store's disk while hashing and kept once the manifest says what they are.
Layers the caller already has elsewhere (the base image's, in its registry) are dropped, not stored.
Layers the caller asks to compress are stored gzip-compressed (image/gzlayer.py); the config, which lists
the uncompressed diff IDs, is still kept byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import BuildError
from modelpack.image.gzlayer import file_chunks, store_gzip_layer
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.tarread import ChunkReader
from modelpack.store.layout import LayoutStore

MAX_JSON = 4 * 1024 * 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class Exported:
    config: Descriptor  # stored, OCI config media type
    config_json: dict[str, Any]
    layers: tuple[Descriptor, ...]  # every layer in order; uncompressed ones have digest == diff ID


@dataclass(frozen=True)
class _Spooled:
    path: Path
    digest: str
    size: int


def import_docker_archive(
    chunks: Iterable[bytes],
    store: LayoutStore,
    *,
    keep: Callable[[int, str], bool] = lambda _i, _d: True,
    compress: Callable[[int], bool] = lambda _i: False,
) -> Exported:
    """Read a docker-archive stream into `store`. `keep(position, diff_id)` says which layers to store
    (the rest are only hashed and checked), `compress(position)` which of those to store gzip-compressed;
    the config is always stored."""
    with _spool_dir(store) as spool:
        layers, jsons = _read_archive(chunks, spool)
        manifest = _manifest_entry(jsons)
        config_name = str(manifest.get("Config", ""))
        if config_name not in jsons:
            raise BuildError(f"docker save gave no config {config_name!r}")
        config_raw = jsons[config_name]
        config_json = json.loads(config_raw)
        diff_ids = list((config_json.get("rootfs") or {}).get("diff_ids") or [])
        paths = [str(p) for p in manifest.get("Layers") or []]
        if len(paths) != len(diff_ids):
            raise BuildError(f"docker save lists {len(paths)} layers for {len(diff_ids)} diff IDs")
        found: list[Descriptor] = []
        for i, (path, diff_id) in enumerate(zip(paths, diff_ids, strict=True)):
            spooled = layers.get(path)
            if spooled is None:
                raise BuildError(f"docker save lists the layer {path} but holds no such file")
            if spooled.digest != diff_id:
                raise BuildError(f"saved layer {i} is {spooled.digest}, the image config says {diff_id}")
            desc = Descriptor(mt.OCI_LAYER_TAR, spooled.digest, spooled.size)
            if keep(i, diff_id) and compress(i):
                desc = store_gzip_layer(store, file_chunks(spooled.path)).descriptor
            elif keep(i, diff_id):
                store.write_blob(desc, file_chunks(spooled.path))
            found.append(desc)
        config = store.put_blob_bytes(config_raw, mt.OCI_CONFIG)
    return Exported(config=config, config_json=config_json, layers=tuple(found))


@contextmanager
def _spool_dir(store: LayoutStore) -> Iterator[Path]:
    # Inside the store's folder: same filesystem as the blobs, and cleaned up whatever happens.
    parent = store.root / "cache" / "docker-save"
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _read_archive(chunks: Iterable[bytes], spool: Path) -> tuple[dict[str, _Spooled], dict[str, bytes]]:
    layers: dict[str, _Spooled] = {}
    links: dict[str, str] = {}
    jsons: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=ChunkReader(chunks), mode="r|") as tf:  # type: ignore[call-overload]
            for member in tf:
                name = posixpath.normpath(member.name)
                if name.endswith("/layer.tar") and member.issym():
                    links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
                elif name.endswith("/layer.tar") and member.isfile():
                    layers[name] = _spool(tf, member, spool / f"{len(layers)}.tar")
                elif "/" not in name and name.endswith(".json") and member.isfile():
                    if member.size > MAX_JSON:
                        raise BuildError(f"docker save gave a {member.size}-byte {name}; refused")
                    f = tf.extractfile(member)
                    assert f is not None
                    jsons[name] = f.read()
    except tarfile.TarError as e:
        raise BuildError(f"reading the saved image failed: {e}") from None
    for alias, target in links.items():
        if target not in layers:
            raise BuildError(f"docker save links {alias} to {target}, which it does not hold")
        layers[alias] = layers[target]
    return layers, jsons


def _spool(tf: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> _Spooled:
    f = tf.extractfile(member)
    assert f is not None
    h = hashlib.sha256()
    size = 0
    with open(dest, "wb") as out:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return _Spooled(dest, f"sha256:{h.hexdigest()}", size)


def _manifest_entry(jsons: dict[str, bytes]) -> dict[str, Any]:
    raw = jsons.get("manifest.json")
    if raw is None:
        raise BuildError("docker save gave no manifest.json (is the engine older than 1.10?)")
    entries = json.loads(raw)
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise BuildError("docker save gave a manifest.json that does not describe one image")
    return entries[0]
