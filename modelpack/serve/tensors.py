"""V2 (Open Inference Protocol) tensors <-> numpy arrays, with errors a client can act on.

Decoding is strict on purpose: JSON numbers are never silently turned into strings or back, an integer
out of a datatype's range is an error (numpy would wrap it), and a float for an integer datatype is an
error (numpy would truncate it). A JSON `true` is accepted as 1 only when mixed with integers, as numpy
does. Data may be nested to the tensor's shape or flat; only the element count has to match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# Every V2 datatype numpy has a dtype for (BF16 has none, so it is refused by name).
DTYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_DATATYPE_OF_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items() if name != "BYTES"}

# numpy kinds of the array inferred from JSON data that each target kind accepts.
_ACCEPTS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
_WHAT = {"b": "booleans", "u": "integers", "i": "integers", "f": "numbers"}


class TensorError(ValueError):
    """A request tensor that cannot be decoded; the message names the tensor and what is wrong (-> 400)."""


class EncodeError(ValueError):
    """A handler output with no V2 representation (-> 500, it is the model's fault, not the client's)."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as V2 metadata describes it; -1 in `shape` is a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype; strings, bytes and objects are BYTES."""
    if dtype.kind in "OUS":
        return "BYTES"
    name = _DATATYPE_OF_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise EncodeError(f"numpy dtype {dtype} has no V2 datatype")
    return name


def decode_input(tensor: object, spec: TensorSpec | None) -> tuple[str, Array]:
    """A request tensor `{name, shape, datatype, data}` -> (name, array), checked against `spec` if any."""
    if not isinstance(tensor, dict):
        raise TensorError("each input must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError("an input has no 'name' (a non-empty string)")
    for key in ("shape", "datatype", "data"):
        if key not in tensor:
            raise TensorError(f"input '{name}': missing '{key}'")
    shape = _shape(name, tensor["shape"])
    datatype = tensor["datatype"]
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise TensorError(
            f"input '{name}': unknown datatype {datatype!r}; expected one of {', '.join(DTYPES)}"
        )
    if spec is not None:
        _check_against_spec(name, shape, datatype, spec)
    array = _data(name, tensor["data"], datatype, shape)
    return name, array


def encode_output(name: str, value: object) -> dict[str, Any]:
    """A handler output -> a V2 response tensor with flat data (an ndarray unless BYTES)."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"output '{name}' is not an array: {exc}") from None
    try:
        datatype = datatype_of(array.dtype)
    except EncodeError as exc:
        raise EncodeError(f"output '{name}': {exc}") from None
    flat = array.ravel()
    # Numeric data stays an array, written by orjson.OPT_SERIALIZE_NUMPY: 8 bytes an element against ~32 for
    # tolist()'s Python objects. Floats go as float64 so each value is written as before (orjson writes a
    # float32 as its shortest float32 form, which a float64 reader sees as a different number).
    if datatype == "BYTES":
        data: Any = _bytes_out(name, flat)
    else:
        wanted = np.dtype(np.float64) if flat.dtype.kind == "f" else flat.dtype.newbyteorder("=")
        data = np.ascontiguousarray(flat, dtype=wanted)
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def _shape(name: str, raw: object) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(type(d) is int and d >= 0 for d in raw):
        raise TensorError(f"input '{name}': 'shape' must be a list of non-negative integers, got {raw!r:.80}")
    if len(raw) > 32:
        raise TensorError(f"input '{name}': shape has {len(raw)} dimensions, at most 32 are supported")
    return tuple(raw)


def _check_against_spec(name: str, shape: tuple[int, ...], datatype: str, spec: TensorSpec) -> None:
    if datatype != spec.datatype:
        raise TensorError(f"input '{name}': datatype {datatype} does not match the model's {spec.datatype}")
    want = spec.shape
    if len(shape) != len(want) or any(w >= 0 and w != s for s, w in zip(shape, want, strict=True)):
        shown = ", ".join("-1" if w < 0 else str(w) for w in want)
        raise TensorError(
            f"input '{name}': shape {list(shape)} does not match the model's [{shown}] (-1 is any size)"
        )


def _data(name: str, data: Any, datatype: str, shape: tuple[int, ...]) -> Array:
    if not isinstance(data, list):
        data = [data]  # a scalar is a one-element tensor, as other V2 servers accept it
    try:
        inferred = np.asarray(data, dtype=object if datatype == "BYTES" else None)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise TensorError(f"input '{name}': 'data' is ragged or not a list of {datatype} values") from None
    count = math.prod(shape)
    if inferred.size != count:
        raise TensorError(
            f"input '{name}': 'data' has {inferred.size} elements, shape {list(shape)} needs {count}"
        )
    array = (
        _bytes_in(name, inferred) if datatype == "BYTES" else _numeric(name, data, inferred, DTYPES[datatype])
    )
    return array.reshape(shape)


def _numeric(name: str, data: list[Any], inferred: Array, dtype: np.dtype[Any]) -> Array:
    datatype = datatype_of(dtype)
    if inferred.size == 0:
        return np.zeros(0, dtype=dtype)
    kind = inferred.dtype.kind
    if kind not in _ACCEPTS[dtype.kind] and not (kind in "fO" and dtype.kind in "iuf"):
        raise TensorError(f"input '{name}': 'data' must be {_WHAT[dtype.kind]} for datatype {datatype}")
    if (kind == "f" and dtype.kind in "iu") or kind == "O":
        # numpy makes int64/uint64 mixes float64 and big ints objects: check the JSON values exactly.
        return _exact(name, np.asarray(data, dtype=object), dtype)
    if dtype.kind in "iu" and inferred.dtype != dtype:
        _check_range(name, int(inferred.min()), int(inferred.max()), dtype)
    with np.errstate(over="ignore"):
        return _finite(name, inferred.astype(dtype, copy=False))


def _exact(name: str, values: Array, dtype: np.dtype[Any]) -> Array:
    items = values.ravel().tolist()
    wanted = int if dtype.kind in "iu" else int | float
    if not all(isinstance(item, wanted) and not isinstance(item, bool) for item in items):
        raise TensorError(
            f"input '{name}': 'data' must be {_WHAT[dtype.kind]} for datatype {datatype_of(dtype)}"
        )
    if dtype.kind in "iu":
        _check_range(name, min(items), max(items), dtype)
    try:
        with np.errstate(over="ignore"):
            return _finite(name, np.array(items, dtype=dtype))
    except OverflowError:
        raise TensorError(f"input '{name}': a value is out of range for {datatype_of(dtype)}") from None


def _finite(name: str, array: Array) -> Array:
    # JSON has no infinity, so an infinite float here is a value the datatype could not hold (1e39 as FP32).
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorError(f"input '{name}': a value is out of range for {datatype_of(array.dtype)}")
    return array


def _check_range(name: str, low: int, high: int, dtype: np.dtype[Any]) -> None:
    info = np.iinfo(dtype)
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise TensorError(f"input '{name}': value {bad} is out of range for {datatype_of(dtype)}")


def _bytes_in(name: str, inferred: Array) -> Array:
    if not all(isinstance(item, str) for item in inferred.flat):
        raise TensorError(f"input '{name}': 'data' must be strings for datatype BYTES")
    return inferred.ravel()


def _bytes_out(name: str, flat: Array) -> list[str]:
    out: list[str] = []
    for item in flat:
        if isinstance(item, bytes | np.bytes_):
            try:
                out.append(bytes(item).decode("utf-8"))
            except UnicodeDecodeError:
                raise EncodeError(f"output '{name}': BYTES element is not UTF-8 text") from None
        elif isinstance(item, str):
            out.append(str(item))
        else:
            raise EncodeError(f"output '{name}': element of type {type(item).__name__} is not str or bytes")
    return out


def shape_of(dims: Sequence[object]) -> tuple[int, ...]:
    """A graph's declared shape (ints, symbolic names or None) -> V2 shape with -1 for dynamic dims."""
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)
