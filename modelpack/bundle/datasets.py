"""Dataset fingerprints: what a model was trained and measured on, recorded by hash, not shipped.

A file's hash is its sha256. A directory's hash is the sha256 of its listing: one line per regular file,
`"<hex sha256>  <path relative to the directory>\\n"`, sorted by path (code point order, which is UTF-8
byte order). That is exactly what `sha256sum` prints, so anyone can check a dataset against a release:

    cd data/iris && sha256sum -c listing.txt     # with the lines from `sha256sum_listing`

and rebuild the hash with `find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum`.
A URI is recorded as given; nothing is downloaded.

Hashing goes through an injected `hash_file(path) -> (digest, size)` so the local store's stat cache can
answer for unchanged files without reading them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from modelpack.errors import InputError
from modelpack.oci import digest as digests
from modelpack.packfile.files import walk
from modelpack.packfile.schema import DatasetSpec
from modelpack.record.dataset import PublishedDataset
from modelpack.record.record import DatasetEntry

HashFile = Callable[[Path], tuple[str, int]]


def sha256_file(
    path: Path, *, read: Callable[[BinaryIO], tuple[str, int]] = digests.of_stream
) -> tuple[str, int]:
    """Streaming sha256 of one file as `("sha256:<hex>", size)`, refusing a file that changes meanwhile
    (a training job still writing it): size or mtime differ between open and the end of the read."""
    try:
        with path.open("rb") as f:
            before = os.fstat(f.fileno())
            digest, size = read(f)
        after = path.stat()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or size != after.st_size:
        raise InputError(
            f"{path} changed while it was being hashed",
            hint="wait for whatever writes it to finish, then retry",
        )
    return digest, size


def hash_dataset(
    spec: DatasetSpec, *, hash_file: HashFile = sha256_file, published: PublishedDataset | None = None
) -> DatasetEntry:
    """The record entry of one declared dataset: hash, size and file count of its path, and its URI; a
    `ref:` adds the published artifact's reference and digest (the caller resolved it and, when there is a
    path too, checked that the two have the same content)."""
    ref, artifact = (published.ref, published.digest) if published else (None, None)
    if spec.path is None:
        if published is not None:
            return DatasetEntry(
                name=spec.name,
                sha256=published.sha256,
                size=published.size,
                files=published.files,
                uri=spec.uri,
                ref=ref,
                digest=artifact,
            )
        return DatasetEntry(name=spec.name, sha256=None, size=0, files=0, uri=spec.uri, packaged=spec.package)
    try:
        st = spec.path.stat()
    except FileNotFoundError:
        raise InputError(f"dataset {spec.name!r}: {spec.path_text} does not exist") from None
    except OSError as e:
        raise InputError(f"dataset {spec.name!r}: cannot read {spec.path_text}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        digest, size, count = hash_directory(spec.path, hash_file=hash_file)
    elif stat.S_ISREG(st.st_mode):
        digest, size = hash_file(spec.path)
        count = 1
    else:
        raise InputError(f"dataset {spec.name!r}: {spec.path_text} is neither a file nor a directory")
    return DatasetEntry(
        name=spec.name,
        sha256=digest,
        size=size,
        files=count,
        path=spec.path_text,
        uri=spec.uri,
        packaged=spec.package,
        ref=ref,
        digest=artifact,
    )


def hash_datasets(
    specs: Iterable[DatasetSpec],
    *,
    hash_file: HashFile = sha256_file,
    published: Mapping[str, PublishedDataset] | None = None,
) -> tuple[DatasetEntry, ...]:
    found = published or {}
    return tuple(hash_dataset(s, hash_file=hash_file, published=found.get(s.name)) for s in specs)


def hash_directory(root: Path, *, hash_file: HashFile = sha256_file) -> tuple[str, int, int]:
    """`("sha256:<hex of the listing>", total bytes, file count)` of every regular file under `root`."""
    listing, size, count = _listing(root, hash_file)
    return digests.of_bytes(listing.encode("utf-8")), size, count


def sha256sum_listing(root: Path, *, hash_file: HashFile = sha256_file) -> str:
    """The `sha256sum`-format listing whose sha256 is the directory's hash (for `sha256sum -c`)."""
    return _listing(root, hash_file)[0]


def _listing(root: Path, hash_file: HashFile) -> tuple[str, int, int]:
    lines: list[str] = []
    total = 0
    for rel, path in walk(root):
        digest, size = hash_file(path)
        lines.append(f"{digests.hex_part(digest)}  {rel}\n")
        total += size
    return "".join(lines), total, len(lines)
