"""A project whose model is one big weight file: the case a source-backed layer exists for."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKFILE = """\
name: big-weights
version: 1.0.0
model:
  paths: [weights.bin]
  format: other
code:
  paths: [handler.py]
  handler: handler:Model
dependencies:
  lockfile: requirements.lock
  python: "3.11"
"""
HANDLER = """\
class Model:
    def load(self, model_dir):
        pass

    def predict(self, inputs):
        return inputs
"""
TAG = "big-weights:1.0.0"
MIB = 1 << 20


def weights_project(root: Path, size: int, seed: bytes = b"w") -> Path:
    """modelpack.yaml, a handler, a lockfile and `weights.bin` of `size` bytes (deterministic per seed)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelpack.yaml").write_text(PACKFILE)
    (root / "handler.py").write_text(HANDLER)
    (root / "requirements.lock").write_text("numpy==2.4.6\n")
    block = hashlib.sha256(seed).digest() * (MIB // 32)
    with open(root / "weights.bin", "wb") as f:
        for i in range(size // MIB):
            f.write(i.to_bytes(8, "big") + block[8:])
        f.write(os.urandom(size % MIB))
    return root


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def store_bytes(root: Path) -> int:
    """Every byte the store holds on disk (allocated blocks), its caches included."""
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*") if p.is_file())


def rewrite_same_size(path: Path) -> None:
    """Other bytes, same size: only the content (and the stat identity) tells."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
