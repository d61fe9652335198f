"""Dataset hashes: files by sha256, directories by their `sha256sum` listing, checked with the real tool."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO

import pytest

from modelpack.bundle.datasets import (
    hash_dataset,
    hash_datasets,
    hash_directory,
    sha256_file,
    sha256sum_listing,
)
from modelpack.errors import InputError
from modelpack.oci import digest as digests
from modelpack.packfile import DatasetSpec


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "b.csv": b"x,y\n1,2\n",
        "a.csv": b"x,y\n3,4\n",
        "sub dir/c d.txt": b"spaces in names\n",
        "sub dir/nested/Z.bin": bytes(range(256)) * 10,
        "é-unicode.txt": "héllo".encode(),
        ".hidden": b"dotfiles count too\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def spec(name: str, path: Path | None, uri: str | None = None, package: bool = False) -> DatasetSpec:
    return DatasetSpec(name, path, path.name if path else None, uri, package)


def test_directory_hash_is_checkable_with_sha256sum(tmp_path: Path) -> None:
    root = tmp_path / "data"
    files = make_tree(root)
    listing = sha256sum_listing(root)
    (tmp_path / "SHA256SUMS").write_text(listing)
    # the very command a user runs, from the dataset directory
    done = subprocess.run(
        ["sha256sum", "-c", "--strict", str(tmp_path / "SHA256SUMS")],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len(files)

    entry = hash_dataset(spec("train", root))
    assert entry.sha256 == "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert entry.files == len(files) and entry.size == sum(len(b) for b in files.values())
    assert entry.path == "data" and entry.packaged is False


def test_listing_matches_what_sha256sum_prints_for_sorted_paths(tmp_path: Path) -> None:
    root = tmp_path / "data"
    files = make_tree(root)
    rels = sorted(files)  # code point order == the C locale's byte order for UTF-8
    printed = subprocess.run(
        ["sha256sum", "--", *rels],
        cwd=root,
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout.decode()
    assert sha256sum_listing(root) == printed


def test_a_changed_file_fails_sha256sum_and_changes_the_hash(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root)
    before = hash_directory(root)
    (tmp_path / "SHA256SUMS").write_text(sha256sum_listing(root))
    (root / "a.csv").write_bytes(b"x,y\n3,5\n")
    done = subprocess.run(
        ["sha256sum", "-c", str(tmp_path / "SHA256SUMS")], cwd=root, capture_output=True, text=True
    )
    assert done.returncode != 0 and "a.csv: FAILED" in done.stdout
    assert hash_directory(root)[0] != before[0]


def test_same_content_elsewhere_same_hash(tmp_path: Path) -> None:
    make_tree(tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    os.utime(tmp_path / "two" / "a.csv", (1, 1))
    assert hash_directory(tmp_path / "one") == hash_directory(tmp_path / "two")


def test_file_dataset_and_uri_only(tmp_path: Path) -> None:
    f = tmp_path / "iris.csv"
    f.write_bytes(b"1,2,3\n")
    entry = hash_dataset(spec("iris", f, uri="s3://bucket/iris.csv"))
    assert entry.sha256 == "sha256:" + hashlib.sha256(b"1,2,3\n").hexdigest()
    assert (entry.size, entry.files, entry.uri) == (6, 1, "s3://bucket/iris.csv")
    remote = hash_dataset(spec("big", None, uri="https://example.com/big.parquet"))
    assert (remote.sha256, remote.size, remote.files, remote.path) == (None, 0, 0, None)
    assert remote.uri == "https://example.com/big.parquet"


def test_hash_file_hook_is_used_for_every_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    files = make_tree(root)
    seen: list[str] = []

    def cached(path: Path) -> tuple[str, int]:
        seen.append(path.relative_to(root).as_posix())
        return sha256_file(path)

    entries = hash_datasets([spec("d", root)], hash_file=cached)
    assert sorted(seen) == sorted(files)
    assert entries[0] == hash_dataset(spec("d", root))


def test_symlinks_are_followed_like_sha256sum_and_loops_walked_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_tree(root)
    (root / "link.csv").symlink_to(root / "a.csv")
    (root / "sub dir" / "loop").symlink_to(root)
    listing = sha256sum_listing(root)
    assert "  link.csv\n" in listing
    assert listing.count("  a.csv\n") == 1
    (tmp_path / "SHA256SUMS").write_text(listing)
    assert (
        subprocess.run(
            ["sha256sum", "-c", str(tmp_path / "SHA256SUMS")], cwd=root, capture_output=True
        ).returncode
        == 0
    )


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset 'gone': gone does not exist"):
        hash_dataset(spec("gone", tmp_path / "gone"))
    root = tmp_path / "data"
    root.mkdir()
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError, match="broken symlink"):
        hash_directory(root)
    (root / "dangling").unlink()
    (root / "back\\slash").write_text("x")
    with pytest.raises(InputError, match="newline or backslash"):
        hash_directory(root)


def test_a_file_that_changes_while_hashed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"0" * (1 << 20))

    def read_while_a_writer_appends(stream: BinaryIO) -> tuple[str, int]:
        result = digests.of_stream(stream)
        with path.open("ab") as writer:
            writer.write(b"appended while hashing")
        return result

    with pytest.raises(InputError, match=r"weights\.bin changed while it was being hashed"):
        sha256_file(path, read=read_while_a_writer_appends)
    assert sha256_file(path) == (
        "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_size,
    )
