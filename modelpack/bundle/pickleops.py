"""Walk a pickle's opcodes (stdlib pickletools) and collect the globals it names, never unpickling.

The walk keeps a stack of literal values just good enough to follow joblib, which writes each numpy
array's raw buffer between opcodes, right after the array wrapper's BUILD: the buffer's size comes from
the wrapper's shape and dtype, and it is skipped (an object array's buffer is a nested pickle: walked).
"""

from __future__ import annotations

import lzma
import math
import pickletools
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Imports = set[tuple[str, str]]  # (module, name) pairs


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


# torch.save's legacy (pre-zip) format: five pickles, the first this number, then raw storage bytes.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PICKLES = 5


def scan_stream(f: Readable) -> tuple[Imports, str | None]:
    """Every global (module, name) the pickles in `f` name, and a parse error. Pickles are followed to the
    end of the file, whatever their protocol (a loader may call `pickle.load` again on what follows), except
    in a legacy torch file, which holds five pickles and then raw tensor bytes no loader unpickles."""
    stream = _Stream(f)
    imports: Imports = set()
    try:
        first = _scan_one(stream, imports)
        count = 1
        limit = _TORCH_LEGACY_PICKLES if first == TORCH_LEGACY_MAGIC else None
        while stream.peek(1) and (limit is None or count < limit):
            _scan_one(stream, imports)
            count += 1
    except (ValueError, EOFError, IndexError, KeyError, TypeError, OverflowError, zlib.error,
            lzma.LZMAError, OSError) as e:  # fmt: skip
        where = f" at byte {stream.pos}"
        return imports, f"not a readable pickle{where}: {str(e).splitlines()[0][:120] or type(e).__name__}"
    return imports, None


class _Stream:
    """A forward-only reader with a one-look peek, for pickletools.genops and joblib's raw buffers."""

    def __init__(self, f: Readable) -> None:
        self._f, self._pending, self.pos = f, b"", 0

    def read(self, n: int = -1) -> bytes:
        data = self._pending[:n] if n >= 0 else self._pending
        self._pending = self._pending[len(data) :]
        if n < 0:
            data += self._f.read()
        elif len(data) < n:
            data += self._f.read(n - len(data))
        self.pos += len(data)
        return data

    def readline(self) -> bytes:
        out = bytearray()
        while not out.endswith(b"\n"):
            c = self.read(1)
            if not c:
                break
            out += c
            if len(out) > 1 << 16:
                raise ValueError("text argument longer than 64 KiB")
        return bytes(out)

    def peek(self, n: int) -> bytes:
        if len(self._pending) < n:
            self._pending += self._f.read(n - len(self._pending))
        return self._pending[:n]

    def tell(self) -> int:
        return self.pos

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.read(min(n, 1 << 20)))
            if not got:
                raise EOFError("file ends inside an array buffer")
            n -= got


_MARK = object()


@dataclass
class _Global:
    module: str
    attr: str

    @property
    def name(self) -> str:
        return f"{self.module}.{self.attr}"


@dataclass
class _Obj:
    cls: Any
    args: Any = None
    state: Any = None


def _ops(stream: _Stream) -> Iterator[tuple[pickletools.OpcodeInfo, Any]]:
    for op, arg, _pos in pickletools.genops(stream):  # type: ignore[arg-type]
        yield op, arg


def _scan_one(stream: _Stream, imports: Imports) -> Any:
    """One pickle, to its STOP, following a stack just well enough to find joblib's array buffers; the
    value it leaves (a literal, or an opaque stand-in)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg in _ops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            g = _Global(module, attr)
            imports.add((module, attr))
            if name == "INST":
                _pop_mark(stack)
                stack.append(_Obj(g))
            else:
                stack.append(g)
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            if not isinstance(module, str) or not isinstance(attr, str):
                raise ValueError("STACK_GLOBAL on values that are not strings")
            imports.add((module, attr))
            stack.append(_Global(module, attr))
        elif name in ("EXT1", "EXT2", "EXT4"):
            imports.add(("copyreg", f"extension_{arg}"))
            stack.append(_Global("copyreg", f"extension_{arg}"))
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[int(arg)])
        elif name in ("TUPLE", "LIST", "FROZENSET"):
            items = _pop_mark(stack)
            stack.append(tuple(items) if name != "LIST" else items)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name == "DICT":
            items = _pop_mark(stack)
            stack.append(dict(zip(items[::2], items[1::2], strict=False)) if _hashable(items[::2]) else {})
        elif name in ("SETITEM", "SETITEMS"):
            items = [stack.pop(), stack.pop()][::-1] if name == "SETITEM" else _pop_mark(stack)
            target = stack[-1]
            if isinstance(target, dict) and _hashable(items[::2]):
                target.update(zip(items[::2], items[1::2], strict=False))
        elif name in ("APPEND", "APPENDS", "ADDITEMS"):
            items = [stack.pop()] if name == "APPEND" else _pop_mark(stack)
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(_Obj(stack.pop(), args))
        elif name == "NEWOBJ_EX":
            stack.pop()
            args = stack.pop()
            stack.append(_Obj(stack.pop(), args))
        elif name == "OBJ":
            items = _pop_mark(stack)
            stack.append(_Obj(items[0] if items else None, tuple(items[1:])))
        elif name == "BUILD":
            state = stack.pop()
            obj = stack[-1]
            if isinstance(obj, _Obj):
                obj.state = state
                if _class_name(obj) == "joblib.numpy_pickle.NumpyArrayWrapper":
                    _skip_joblib_array(stream, state, imports)
        elif name == "STOP":
            return stack[-1] if stack else None
        elif name in ("EMPTY_LIST",):
            stack.append([])
        elif name in ("EMPTY_DICT",):
            stack.append({})
        elif name in ("EMPTY_TUPLE",):
            stack.append(())
        elif name in ("PROTO", "FRAME"):
            continue
        elif op.arg is not None and not op.stack_before:
            stack.append(arg)  # a literal: ints, strings, bytes, floats
        else:
            _generic(op, stack)
    raise EOFError("pickle ends without STOP")


def _generic(op: pickletools.OpcodeInfo, stack: list[Any]) -> None:
    """Any other opcode by its declared stack effect: pop what it takes, push opaque values."""
    for item in reversed(op.stack_before):
        if item is pickletools.markobject:
            _pop_mark(stack)
        else:
            stack.pop()
    for item in op.stack_after:
        if item is pickletools.markobject:
            stack.append(_MARK)
        elif item is pickletools.pynone:
            stack.append(None)
        elif item is pickletools.pybool:
            stack.append(op.name == "NEWTRUE")
        else:
            stack.append(_Obj(None))


def _pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise ValueError("MARK missing")


def _hashable(keys: Sequence[Any]) -> bool:
    return all(isinstance(k, (str, int, bytes, float, tuple)) or k is None for k in keys)


def _class_name(obj: _Obj) -> str | None:
    cls = obj.cls
    # protocol 0/1 builds objects as copyreg._reconstructor(cls, base, state)
    if isinstance(cls, _Global) and cls.name.endswith("._reconstructor") and isinstance(obj.args, tuple):
        cls = obj.args[0] if obj.args else None
    return cls.name if isinstance(cls, _Global) else None


def _skip_joblib_array(stream: _Stream, state: Any, imports: Imports) -> None:
    """joblib writes each numpy array's buffer right after its wrapper's BUILD: skip it (or, for an
    object array, scan the pickle joblib wrote there)."""
    if not isinstance(state, dict):
        raise ValueError("joblib array wrapper without a state")
    dtype, shape = state.get("dtype"), state.get("shape")
    if _has_object(dtype, 0):  # joblib pickles an array holding objects: scan that pickle
        _scan_one(stream, imports)
        return
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError("joblib array wrapper with an unreadable shape")
    elsize = _itemsize(dtype)
    if state.get("numpy_array_alignment_bytes") is not None:
        pad = stream.read(1)
        if not pad:
            raise EOFError("file ends before an array buffer")
        stream.skip(pad[0])
    stream.skip(math.prod(shape) * elsize)


def _dtype_code(dtype: Any) -> str:
    if not isinstance(dtype, _Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        raise ValueError("joblib array wrapper with an unreadable dtype")
    if not isinstance(dtype.cls, _Global) or dtype.cls.name != "numpy.dtype":
        raise ValueError("joblib array wrapper whose dtype is not made by numpy.dtype")
    return str(dtype.args[0])


def _has_object(dtype: Any, depth: int) -> bool:
    """Whether numpy would give the dtype `hasobject` (then joblib pickles the array): an object code, or
    a structured dtype with an object field at any depth."""
    if depth > 32:
        raise ValueError("joblib array dtype nested too deep")
    if _dtype_code(dtype).startswith("O"):
        return True
    fields = dtype.state[4] if isinstance(dtype.state, tuple) and len(dtype.state) > 4 else None
    if fields is None:
        return False
    if not isinstance(fields, dict):
        raise ValueError("joblib array dtype with unreadable fields")
    for field in fields.values():
        if not isinstance(field, tuple) or not field:
            raise ValueError("joblib array dtype with an unreadable field")
        if _has_object(field[0], depth + 1):
            return True
    return False


def _itemsize(dtype: Any) -> int:
    """The item size numpy gives the unpickled dtype, by numpy's own rules: the code's size for a sized
    type, whatever the pickled state claims; the state's size only for the flexible kinds (void, bytes,
    str), whose `__setstate__` takes it. A claimed size the scanner follows and numpy does not would let
    the scanner skip over a pickle joblib then loads."""
    try:
        import numpy
    except ImportError:
        raise ValueError("numpy is needed to size a joblib array's buffer") from None
    code = _dtype_code(dtype)
    try:
        made = numpy.dtype(code)
    except (TypeError, ValueError):
        raise ValueError(f"joblib array of dtype {code[:40]!r}, which numpy does not make") from None
    if made.kind not in "VSU":
        return int(made.itemsize)
    claimed = dtype.state[5] if isinstance(dtype.state, tuple) and len(dtype.state) > 5 else None
    elsize = claimed if isinstance(claimed, int) and claimed > 0 else int(made.itemsize)
    if elsize <= 0:
        raise ValueError(f"joblib array of dtype {code[:40]!r}: unknown item size")
    return elsize
