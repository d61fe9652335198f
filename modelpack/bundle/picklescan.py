"""Scan pickle-based weights for imports that run code when unpickled, without unpickling anything.

A pickle names the callables it needs as globals (GLOBAL, STACK_GLOBAL, INST opcodes); `pickle.load`
imports and calls them. This scanner walks the opcodes with the stdlib `pickletools` and sorts each
global into safe (reconstruction helpers of numpy, scikit-learn, torch, a few builtins), dangerous
(anything that reaches the OS, the interpreter or an arbitrary attribute) or unknown (a user's own
classes: recorded, not refused). Formats followed: plain pickles, several pickles in a row (legacy torch
files), torch zip archives (each `*.pkl` member), joblib files with the raw numpy buffers joblib writes
between opcodes, and joblib's gzip/bz2/xz/zlib compression. A pickle that cannot be read to its end is
reported as unscannable: whatever hides behind the unreadable part was not checked.
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
_SAFE_GLOBALS = frozenset(
    {
        "collections.OrderedDict", "collections.defaultdict", "collections.deque", "collections.Counter",
        "copyreg._reconstructor", "copy_reg._reconstructor", "_codecs.encode", "datetime.datetime",
        "datetime.date", "datetime.timedelta", "datetime.timezone", "decimal.Decimal", "uuid.UUID",
        "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar", "numpy.ma.core._mareconstruct",
        "joblib.numpy_pickle.NumpyArrayWrapper", "joblib.numpy_pickle_compat.NDArrayWrapper",
        "torch.Size", "torch.device", "torch.dtype", "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter", "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
        "torch.serialization._get_layout", "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
    }
)  # fmt: skip
# Packages whose top-level names (no dotted attribute walk) are data classes and reconstruction helpers.
_SAFE_PREFIXES = (
    "sklearn.", "scipy.sparse.", "numpy.random.", "numpy.core.numeric.", "numpy._core.numeric.",
    "torch._utils.", "torch.nn.modules.", "xgboost.", "lightgbm.", "pandas.core.", "pandas._libs.",
)  # fmt: skip
_TORCH_SCALARS = frozenset(
    {"float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool",
     "complex64", "complex128", "half", "float", "double", "long", "int", "short"}
)  # fmt: skip
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
    """Sort the global `name` (maybe a dotted attribute walk) of `module`: safe, dangerous or unknown."""
    full = f"{module}.{name}"
    if full in _SAFE_GLOBALS:
        return "safe"
    parts = name.split(".")
    # Cython's generated `__pyx_unpickle_<Class>` rebuilds a cdef class from its state: not a dunder hook.
    dunder = [p for p in parts if p.startswith("__") and not p.startswith("__pyx_unpickle_")]
    if dunder or any(p in _DANGEROUS_NAMES for p in parts):
        return "dangerous"
    if any(p in _DANGEROUS_MODULES for p in parts):  # an attribute walk to a module: `x.os.system`
        return "dangerous"
    for bad in _DANGEROUS_MODULES:
        if module == bad or module.startswith(bad + "."):
            if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
                return "safe"
            return "dangerous"
    if "." in name:  # a package vouches only for plain names, not for what their attributes reach
        return "unknown"
    if module == "torch" and (name.endswith("Storage") or name in _TORCH_SCALARS):
        return "safe"
    if any((module + ".").startswith(p) for p in _SAFE_PREFIXES):
        return "safe"
    return "unknown"


def scan_file(path: Path, display: str) -> list[PickleFinding]:
    """Findings for one file; [] when a maybe-pickle suffix (.bin) holds no pickle."""
    suffix = PurePosixPath(display).suffix.lower()
    with path.open("rb") as f:
        head = f.read(6)
    if head.startswith(b"PK\x03\x04"):
        return _scan_zip(path, display)
    if suffix in _MAYBE_PICKLE and not _pickle_header(head):
        return []
    with _open_decompressed(path, head) as f:
        imports, error = scan_stream(f)
    return [_finding(display, None, imports, error)]


def _pickle_header(head: bytes) -> bool:
    """PROTO 2-5: how every pickle written by torch.save/pickle.dump since Python 3 begins. A 0x80 byte
    alone is not enough for a raw weights `.bin`: one raw file in 256 starts with it, and would then be
    refused as an unreadable pickle."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


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
    try:
        with zipfile.ZipFile(path) as archive:
            findings = []
            for member in sorted(n for n in archive.namelist() if n.endswith(".pkl")):
                with archive.open(member) as f:
                    imports, error = scan_stream(f)
                findings.append(_finding(display, member, imports, error))
            return findings
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return [_finding(display, None, set(), f"not a readable zip archive: {e}")]


def _open_decompressed(path: Path, head: bytes) -> io.BufferedIOBase:
    """joblib's compressors, recognised by their magic bytes; anything else is read as is."""
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if head.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if head.startswith(b"\xfd7zXZ") or head.startswith(b"\x5d\x00\x00"):
        return lzma.open(path, "rb")
    if head[:1] == b"\x78" and len(head) > 1 and (head[0] * 256 + head[1]) % 31 == 0:
        return io.BufferedReader(_ZlibReader(path.open("rb")))
    return path.open("rb")


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
    """Scan every (bundle path, file on disk) whose suffix says it may be a pickle."""
    findings: list[PickleFinding] = []
    for display, path in sorted(files):
        if is_candidate(display):
            findings += scan_file(path, display)
    return findings


def enforce(findings: Sequence[PickleFinding], allow: Sequence[str], *, where: str) -> SecurityInfo | None:
    """Refuse a dangerous import or an unscannable pickle the packfile does not allow (InputError naming
    the file and the import); else the record's `security` entry (None when no pickle was found)."""
    hint = "convert the weights to safetensors or ONNX, or, if you trust this file, allow it in {}: " + (
        "security: {{allow_pickle_imports: [{}]}}"
    )
    used: set[str] = set()
    for f in findings:
        for name in f.dangerous:
            if not allowed(name, allow):
                raise InputError(
                    f"{f.where}: the pickle imports {name}, which can run code when loaded; refused",
                    hint=hint.format(where, repr(name)),
                )
            used.add(name)
        if f.error is not None:
            if "*" not in allow:
                raise InputError(
                    f"{f.where}: cannot be checked for code it would run ({f.error}); refused",
                    hint=hint.format(where, "'*'"),
                )
            used.add("*")
    if not findings:
        return None
    return SecurityInfo(SCANNER, tuple(f.entry() for f in findings), tuple(sorted(used)))
