"""Scan pickle-based weights for imports that run code when unpickled, without unpickling anything.

A pickle names the callables it needs as globals (GLOBAL, STACK_GLOBAL, INST opcodes); `pickle.load`
imports and calls them. This scanner walks the opcodes with the stdlib `pickletools` and lets a global
pass only when it is on an exact list of `module.name` pairs (pickle_allow.py: reconstruction helpers of
numpy, scikit-learn, torch, a few builtins; nothing trusted for the package it sits in, since a module
re-exports what it imports). Everything else is refused unless modelpack.yaml allows it by name, and the
record keeps which were dangerous (reaching the OS, the interpreter or an arbitrary attribute) and which
only unknown. Files are sniffed, not trusted by name: plain pickles, torch zip archives (each `*.pkl`
member), joblib files with the raw numpy buffers joblib writes between opcodes (sized by numpy's rules),
and any of them inside gzip/bz2/xz/zlib. Every pickle in a file is followed to its end (a legacy torch
file: its five). A pickle that cannot be read to its end is reported as unscannable: whatever hides behind
the unreadable part was not checked.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelpack.bundle.pickle_allow import SAFE_GLOBALS
from modelpack.bundle.pickleops import Imports, scan_stream
from modelpack.errors import InputError
from modelpack.record.record import PickleEntry, SecurityInfo

SCANNER = "modelpack.picklescan/1"
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt"})
# .bin and .ckpt are pickles only sometimes (a raw buffer or a safetensors-like file is not): those are
# scanned when they look like one; the others always, and must parse.
_MAYBE_PICKLE = frozenset({".bin", ".ckpt"})

_SAFE_BUILTINS = frozenset(
    {"set", "frozenset", "slice", "complex", "range", "bytearray", "bytes", "dict", "list", "tuple",
     "int", "float", "str", "bool", "object", "NoneType", "Ellipsis", "NotImplemented"}
)  # fmt: skip
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".lzma", ".z", ".zlib")
# Modules whose globals reach the OS, the interpreter, the network or arbitrary code.
_DANGEROUS_MODULES = frozenset(
    {
        "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "sys", "runpy",
        "pty", "shutil", "socket", "importlib", "pickle", "_pickle", "marshal", "ctypes", "webbrowser",
        "code", "codeop", "commands", "multiprocessing", "asyncio", "platform", "pdb", "bdb", "timeit",
        "cProfile", "profile", "trace", "types", "dill", "cloudpickle", "signal", "operator",
        "_operator", "io", "_io", "pathlib", "tempfile", "glob", "http", "urllib",
        "requests", "ftplib", "smtplib", "telnetlib", "zipimport", "pkgutil", "site", "inspect",
        "gc", "threading", "_thread", "select", "shelve", "builtins", "__builtin__", "numpy.testing",
        "torch.hub", "torch.serialization", "torch.jit", "torch._dynamo", "torch._inductor",
    }
)  # fmt: skip
_DANGEROUS_NAMES = frozenset(
    {"eval", "exec", "compile", "system", "popen", "spawn", "execv", "execve", "__import__", "getattr",
     "setattr", "delattr", "globals", "locals", "vars", "open", "load", "loads", "run", "call",
     "check_output", "Popen", "attrgetter", "methodcaller", "runstring", "apply"}
)  # fmt: skip


@dataclass(frozen=True)
class PickleFinding:
    """What one pickle names. `member` is the entry inside a zip archive (torch), else None."""

    path: str  # as it sits in the bundle, e.g. "models/model.pkl"
    member: str | None
    imports: tuple[str, ...]  # every global the pickle names, "module.name", sorted
    dangerous: tuple[str, ...]
    unknown: tuple[str, ...]
    error: str | None = None  # why the pickle could not be read to its end

    @property
    def where(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path

    def entry(self) -> PickleEntry:
        return PickleEntry(self.path, self.imports, self.member, self.error, self.dangerous, self.unknown)


def is_candidate(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in PICKLE_SUFFIXES


def classify(module: str, name: str) -> str:
    """Sort the global `name` (maybe a dotted attribute walk) of `module`: safe (on the exact list of
    pickle_allow.py), dangerous (reaches the OS, the interpreter or an arbitrary attribute) or unknown.
    Only safe passes a build unasked: nothing is trusted for the package it sits in."""
    if f"{module}.{name}" in SAFE_GLOBALS:
        return "safe"
    if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
        return "safe"
    parts = name.split(".")
    # Cython's generated `__pyx_unpickle_<Class>` rebuilds a cdef class from its state: not a dunder hook.
    dunder = [p for p in parts if p.startswith("__") and not p.startswith("__pyx_unpickle_")]
    if dunder or any(p in _DANGEROUS_NAMES for p in parts):
        return "dangerous"
    if any(p in _DANGEROUS_MODULES for p in parts):  # an attribute walk to a module: `x.os.system`
        return "dangerous"
    if any(module == bad or module.startswith(bad + ".") for bad in _DANGEROUS_MODULES):
        return "dangerous"
    return "unknown"


def scan_file(path: Path, display: str) -> list[PickleFinding]:
    """Findings for one file, whatever its name: a pickle is known by its content (a PROTO 2-5 header, a
    torch zip, or either inside gzip, bz2, xz or zlib) or by a pickle suffix (`.pkl`, `.pkl.gz`, ...;
    protocols 0 and 1 have no header). [] when the file holds no pickle."""
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK\x03\x04"):
        return _scan_zip(path, display)
    inner = display
    if _compression(head) is not None and inner.lower().endswith(_COMPRESSED_SUFFIXES):
        inner = inner.rsplit(".", 1)[0]
    sure = PurePosixPath(inner).suffix.lower() in PICKLE_SUFFIXES - _MAYBE_PICKLE
    try:
        with _open_decompressed(path, head) as f:
            if not (sure or _pickle_header(f.peek(8)[:2])):
                return []
            imports, error = scan_stream(f)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        if not sure:
            return []  # a compressed-looking file that is not: no pickle a loader could reach
        imports, error = set(), f"cannot be decompressed: {e}"
    if error is not None and not imports and not sure:
        return []  # looked like one, but a loader fails before importing anything: not a pickle
    return [_finding(display, None, imports, error)]


def _compression(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ") or head.startswith(b"\x5d\x00\x00"):
        return "xz"
    if head[:1] == b"\x78" and len(head) > 1 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


def allowed(name: str, allow: Sequence[str]) -> bool:
    """`allow` entries are exact "module.name", "module.*" (a module and its submodules) or "*"."""
    for entry in allow:
        if entry in ("*", name) or (entry.endswith(".*") and name.startswith(entry[:-1])):
            return True
    return False


def _finding(display: str, member: str | None, imports: Imports, error: str | None) -> PickleFinding:
    kinds = {f"{m}.{n}": classify(m, n) for m, n in imports}
    return PickleFinding(
        path=display,
        member=member,
        imports=tuple(sorted(kinds)),
        dangerous=tuple(sorted(n for n, k in kinds.items() if k == "dangerous")),
        unknown=tuple(sorted(n for n, k in kinds.items() if k == "unknown")),
        error=error,
    )


def _scan_zip(path: Path, display: str) -> list[PickleFinding]:
    """Each `*.pkl` member of a zip archive (torch.save's format); [] for a zip with none."""
    sure = is_candidate(display)
    try:
        with zipfile.ZipFile(path) as archive:
            findings = []
            for member in sorted(n for n in archive.namelist() if n.endswith(".pkl")):
                with archive.open(member) as f:
                    imports, error = scan_stream(f)
                findings.append(_finding(display, member, imports, error))
            return findings
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return [_finding(display, None, set(), f"not a readable zip archive: {e}")] if sure else []


def _open_decompressed(path: Path, head: bytes) -> Any:
    """joblib's compressors (and gzip'd pickles), recognised by their magic bytes; anything else as is.
    Each reader has `peek`, for the sniff."""
    kind = _compression(head)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zlib":
        return io.BufferedReader(_ZlibReader(path.open("rb")))
    return path.open("rb")


def _pickle_header(head: bytes) -> bool:
    """PROTO 2-5: how every pickle written by torch.save/pickle.dump since Python 3 begins. A 0x80 byte
    alone is not enough for a raw weights `.bin`: one raw file in 256 starts with it."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


class _ZlibReader(io.RawIOBase):
    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw, self._z, self._buf = raw, zlib.decompressobj(), b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._z.eof:
            data = self._raw.read(1 << 16)
            self._buf = self._z.decompress(data) if data else self._z.flush()
            if not data:
                break
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def scan_bundle_files(files: Sequence[tuple[str, Path]]) -> list[PickleFinding]:
    """Scan every (bundle path, file on disk): each is sniffed (scan_file), none trusted by its name."""
    findings: list[PickleFinding] = []
    for display, path in sorted(files):
        findings += scan_file(path, display)
    return findings


def enforce(findings: Sequence[PickleFinding], allow: Sequence[str], *, where: str) -> SecurityInfo | None:
    """Refuse every import not on the safe list, and every unscannable pickle, that the packfile does not
    allow (InputError naming the file, the import and how to allow it by name); else the record's
    `security` entry (None when no pickle was found)."""
    hint = "if you trust it, allow it by name in {}: security: {{allow_pickle_imports: [{}]}}"
    used: set[str] = set()
    for f in findings:
        for name, why in [(n, "which can run code when loaded") for n in f.dangerous] + [
            (n, "which is not on modelpack's list of safe globals") for n in f.unknown
        ]:
            if not allowed(name, allow):
                raise InputError(
                    f"{f.where}: the pickle imports {name}, {why}; refused",
                    hint="convert the weights to safetensors or ONNX, or, "
                    + hint.format(where, repr(name)),
                )
            used.add(name)
        if f.error is not None:
            if "*" not in allow:
                raise InputError(
                    f"{f.where}: cannot be checked for code it would run ({f.error}); refused",
                    hint="convert the weights to safetensors or ONNX, or, " + hint.format(where, "'*'"),
                )
            used.add("*")
    if not findings:
        return None
    return SecurityInfo(SCANNER, tuple(f.entry() for f in findings), tuple(sorted(used)))
