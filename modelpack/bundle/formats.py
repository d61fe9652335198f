"""What a model file is, from its first bytes: checks `model.format` against the weights at build.

A release whose declared format is not what its files hold builds and pushes, then fails when the serving
handler loads it (or, worse, an ONNX runtime is handed a pickle). Each format has a signature cheap to
test without a framework: ONNX is a protobuf ModelProto (the top-level fields are walked, seeking over
their contents, until ir_version and graph are seen), safetensors an 8-byte header length followed by a
JSON object, GGUF the magic `GGUF`, torch.save a zip or a pickle, joblib a pickle or one of its
compressors. A Git LFS pointer in place of the weights is named as such.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from modelpack.errors import InputError

# What each kind is called in an error; the kinds `sniff` returns.
DESCRIPTIONS = {
    "onnx": "an ONNX model",
    "safetensors": "a safetensors file",
    "gguf": "a GGUF file",
    "ggml": "a legacy GGML file (convert it to GGUF)",
    "zip": "a zip archive (torch.save, TorchScript)",
    "pickle": "a pickle (pickle, joblib or legacy torch.save)",
    "compressed": "a compressed file (joblib with compress=)",
    "lfs-pointer": "a Git LFS pointer, not the weights",
}
# model.format -> the kinds of file that can hold it ("other" is not checked).
ACCEPTS = {
    "onnx": frozenset({"onnx"}),
    "safetensors": frozenset({"safetensors"}),
    "gguf": frozenset({"gguf"}),
    "pytorch": frozenset({"zip", "pickle"}),
    "sklearn-pickle": frozenset({"pickle", "compressed"}),
}
# kind -> the model.format to suggest when a file of that kind is declared as something else.
SUGGEST = {
    "onnx": "onnx",
    "safetensors": "safetensors",
    "gguf": "gguf",
    "zip": "pytorch",
    "pickle": "sklearn-pickle or pytorch",
    "compressed": "sklearn-pickle",
}
# Suffixes that promise one kind: a file named so must be it, whatever model.format says.
SUFFIX_KINDS = {".onnx": "onnx", ".safetensors": "safetensors", ".gguf": "gguf"}
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})

_LFS = b"version https://git-lfs.github.com/spec/v1"
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x5d\x00\x00", b"\x04\x22\x4d\x18", b"ZF")
_GGML = (b"lmgg", b"fmgg", b"tjgg")
_SAFETENSORS_HEADER_MAX = 100 * 1024 * 1024  # the limit the safetensors library itself enforces
# ModelProto fields and their protobuf wire types (0 varint, 2 length-delimited); other field numbers are
# tolerated with a valid wire type, as a newer ONNX may add fields.
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
_ONNX_MAX_FIELDS = 10_000


def sniff(path: Path, display: str | None = None) -> str | None:
    """The kind of file at `path` (a key of DESCRIPTIONS), None when its bytes match no known format.
    `display` (the bundle path) gives the suffix: a protocol 0/1 pickle has no magic bytes of its own."""
    suffix = PurePosixPath(display or path.name).suffix.lower()
    with path.open("rb") as f:
        head = f.read(64)
        if head.startswith(_LFS):
            return "lfs-pointer"
        if head.startswith(b"GGUF"):
            return "gguf"
        if head[:4] in _GGML:
            return "ggml"
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return "zip"
        # before the pickle test: a header length of 640 bytes begins like PROTO 2
        if _is_safetensors(f, head):
            return "safetensors"
        if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            return "pickle"
        if _is_onnx(f):
            return "onnx"
        if head.startswith(_COMPRESSED) or _is_zlib(head):
            return "compressed"
    return "pickle" if suffix in _PICKLE_SUFFIXES and head else None


def check_model_format(fmt: str, files: Sequence[tuple[str, Path]], *, where: str) -> None:
    """Refuse (InputError naming the file) a model file whose suffix promises another format, a Git LFS
    pointer, or a declared `fmt` that no model file holds. `files` are (bundle path, file on disk)."""
    kinds: dict[str, str | None] = {}
    for display, path in sorted(files):
        suffix = PurePosixPath(display).suffix.lower()
        # LFS pointers are a few hundred bytes: larger files need no read for that check
        if suffix in SUFFIX_KINDS or path.stat().st_size < 1024:
            kinds[display] = kind = sniff(path, display)
            if kind == "lfs-pointer":
                raise InputError(
                    f"{display}: is a Git LFS pointer, not the weights",
                    hint="run `git lfs pull` in the project before building",
                )
            promised = SUFFIX_KINDS.get(suffix)
            if promised is not None and kind != promised:
                raise InputError(
                    f"{display}: not {DESCRIPTIONS[promised]}: it is {_describe(kind)}",
                    hint=f"re-export the weights as {promised}, or rename the file after what it holds",
                )
    accepted = ACCEPTS.get(fmt)
    if accepted is None:
        return
    for display, path in sorted(files):
        if display not in kinds:
            kinds[display] = sniff(path, display)
        if kinds[display] in accepted:
            return
    shown = [f"{d} is {_describe(k)}" for d, k in kinds.items()][:3]
    more = f" (and {len(kinds) - 3} more)" if len(kinds) > 3 else ""
    found = {SUGGEST[k] for k in kinds.values() if k in SUGGEST}
    fix = f"set model.format to {found.pop()} in {where}, or " if len(found) == 1 else ""
    raise InputError(
        f"{where}: model.format is {fmt}, but no model file is {_declared(fmt)}: {'; '.join(shown)}{more}",
        hint=f"{fix}point model.paths at the {fmt} weights",
    )


def _declared(fmt: str) -> str:
    return " or ".join(DESCRIPTIONS[k] for k in sorted(ACCEPTS[fmt]))


def _describe(kind: str | None) -> str:
    return DESCRIPTIONS[kind] if kind else "no format recognised (not ONNX, safetensors, GGUF, zip or pickle)"


def _is_zlib(head: bytes) -> bool:
    return len(head) > 1 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0


def _is_safetensors(f: BinaryIO, head: bytes) -> bool:
    """u64 little-endian header length, then that many bytes of a JSON object of tensor entries."""
    if len(head) < 10 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    size = f.seek(0, 2)
    if n < 2 or n > min(_SAFETENSORS_HEADER_MAX, size - 8):
        return False
    f.seek(8)
    try:
        header = json.loads(f.read(n))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(header, dict) and all(
        isinstance(v, dict) and "dtype" in v and "data_offsets" in v
        for k, v in header.items()
        if k != "__metadata__"
    )


def _varint(f: BinaryIO) -> int | None:
    value = 0
    for shift in range(0, 70, 7):
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
    return None


def _is_onnx(f: BinaryIO) -> bool:
    """Walks ModelProto's top-level fields (seeking over their bodies) until ir_version and graph are seen;
    any field that is no valid protobuf field, or runs past the end, says it is not ONNX. Protobuf writes
    fields in number order, so an ONNX file starts with ir_version (tag 0x08)."""
    size = f.seek(0, 2)
    f.seek(0)
    if f.read(1) != b"\x08":
        return False
    f.seek(0)
    seen: set[int] = set()
    for _ in range(_ONNX_MAX_FIELDS):
        tag = _varint(f)
        if not tag:  # end of file, or the zero padding some tools append
            return False
        number, wire = tag >> 3, tag & 7
        if number == 0 or _ONNX_FIELDS.get(number, wire) != wire:
            return False
        if wire == 0:
            value = _varint(f)
            if value is None or (number == 1 and not 1 <= value <= 100):
                return False
        elif wire == 2:
            length = _varint(f)
            if length is None or f.tell() + length > size:
                return False
            f.seek(length, 1)
        elif wire in (1, 5):
            if f.seek(8 if wire == 1 else 4, 1) > size:
                return False
        else:
            return False
        seen.add(number)
        if {1, 7} <= seen:
            return True
    return False
