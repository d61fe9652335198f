"""Model handlers: the built-in ONNX handler and user classes named `module:Class`.

A custom handler is any class with a no-argument constructor and two methods:

    load(model_dir: pathlib.Path) -> None        # called once at startup; ready only after it returns
    predict(inputs: dict[str, numpy.ndarray]) -> dict[str, numpy.ndarray] | numpy.ndarray

A bare ndarray from `predict` is one output named "output". It may also set `inputs` and `outputs`
attributes (lists of TensorSpec) after `load`; when it sets `inputs`, requests are validated against them
exactly as for ONNX models, otherwise any well-formed V2 tensors reach `predict`.

The ONNX handler reads input and output names, datatypes and shapes from the graph. skl2onnx classifiers
converted without `options={'zipmap': False}` output probabilities as a sequence of maps
(`seq(map(int64|string, tensor(float)))`); the handler converts that output into a dense FP32 tensor
[N, n_classes] whose columns are the classes in sorted order (what `zipmap: False` would have produced).
Other non-tensor outputs (sequences, maps) are left out of the model's metadata and of default responses;
a request that names one in `outputs` gets a 500 naming its ONNX type.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelpack.serve.tensors import Array, EncodeError, TensorSpec, shape_of

_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_ZIPMAP_TYPES = ("seq(map(int64,tensor(float)))", "seq(map(string,tensor(float)))")


class HandlerError(Exception):
    """The handler could not be named, imported or loaded; the message says which and why."""


@runtime_checkable
class Handler(Protocol):
    """What the server calls; see the module docstring for the contract."""

    def load(self, model_dir: Path) -> None: ...

    def predict(self, inputs: dict[str, Array]) -> Mapping[str, Array] | Array: ...


@dataclass(frozen=True)
class LoadedModel:
    """A loaded handler and what the server knows of its signature (None: not declared by the handler)."""

    handler: Handler
    platform: str
    inputs: tuple[TensorSpec, ...] | None
    outputs: tuple[TensorSpec, ...] | None
    unservable: Mapping[str, str] = field(default_factory=dict)  # output name -> type with no V2 form

    def input_spec(self, name: str) -> TensorSpec | None:
        for spec in self.inputs or ():
            if spec.name == name:
                return spec
        return None


class OnnxHandler:
    """onnxruntime InferenceSession on CPU over one .onnx file."""

    def __init__(self, model_file: str, threads: int = 0) -> None:
        self.model_file = model_file
        self.threads = threads
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()
        self._session: Any = None
        self._zipmap: frozenset[str] = frozenset()
        self.unservable: dict[str, str] = {}

    def load(self, model_dir: Path) -> None:
        import onnxruntime as ort  # deferred: custom-handler images need not import it

        path = model_dir / self.model_file
        if not path.is_file():
            raise HandlerError(f"onnx model {path} not found; set 'model' to its path under {model_dir}")
        options = ort.SessionOptions()
        if self.threads > 0:
            options.intra_op_num_threads = self.threads
        # Spinning intra-op threads burn the core the event loop needs between small requests (measured).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise HandlerError(f"onnx model {path} could not be loaded: {exc}") from None
        self.inputs = tuple(_spec(arg, "input") for arg in self._session.get_inputs())
        outputs = self._session.get_outputs()
        self._zipmap = frozenset(arg.name for arg in outputs if arg.type in _ZIPMAP_TYPES)
        # Other non-tensor outputs (sequences, maps, optionals) have no V2 form: left out of the signature
        # and of default responses, and a 500 naming the type when a request asks for one.
        self.unservable = {
            arg.name: arg.type
            for arg in outputs
            if arg.name not in self._zipmap and arg.type not in _ONNX_TYPES
        }
        self.outputs = tuple(
            TensorSpec(arg.name, "FP32", (-1, -1)) if arg.name in self._zipmap else _spec(arg, "output")
            for arg in outputs
            if arg.name not in self.unservable
        )

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        return self.run(inputs, None)

    def run(self, inputs: dict[str, Array], output_names: Sequence[str] | None) -> dict[str, Array]:
        names = list(output_names) if output_names else [spec.name for spec in self.outputs]
        for name in names:
            if name in self.unservable:
                raise EncodeError(
                    f"output '{name}' has ONNX type {self.unservable[name]}, which has no V2 tensor form; "
                    "ask for the model's tensor outputs"
                )
        values = self._session.run(names, inputs)
        return {
            name: _dense(name, value) if name in self._zipmap else value
            for name, value in zip(names, values, strict=True)
        }


def _spec(arg: Any, role: str) -> TensorSpec:
    datatype = _ONNX_TYPES.get(arg.type)
    if datatype is None:
        raise HandlerError(f"onnx {role} '{arg.name}' has type {arg.type}; only tensors are served")
    return TensorSpec(arg.name, datatype, shape_of(arg.shape or []))


def _dense(name: str, value: object) -> Array:
    """skl2onnx's ZipMap output (a list of {class: probability}) -> [N, n_classes] FP32, classes sorted."""
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise EncodeError(f"output '{name}' is not a tensor and not a list of maps")
    if not value:
        return np.zeros((0, 0), dtype=np.float32)
    classes = sorted(value[0])
    return np.asarray([[row[c] for c in classes] for row in value], dtype=np.float32)


def load_handler(
    handler: str, model_dir: Path, code_dir: Path, model: str | None, threads: int
) -> LoadedModel:
    """Instantiate the handler named in the config ("onnx" or "module:Class") and call its load()."""
    if handler == "onnx":
        if not model:
            raise HandlerError("handler 'onnx' needs 'model': the .onnx file's path relative to model_dir")
        onnx = OnnxHandler(model, threads)
        onnx.load(model_dir)
        return LoadedModel(onnx, "onnxruntime", onnx.inputs, onnx.outputs, onnx.unservable)
    instance = _instantiate(handler, code_dir)
    try:
        instance.load(model_dir)
    except Exception as exc:
        raise HandlerError(f"handler {handler}: load() failed: {type(exc).__name__}: {exc}") from exc
    inputs = getattr(instance, "inputs", None)
    outputs = getattr(instance, "outputs", None)
    return LoadedModel(
        instance, "python", _specs(handler, "inputs", inputs), _specs(handler, "outputs", outputs)
    )


def _instantiate(handler: str, code_dir: Path) -> Handler:
    module_name, sep, class_name = handler.partition(":")
    if not sep or not module_name or not class_name:
        raise HandlerError(f"handler {handler!r} is neither 'onnx' nor 'module:Class'")
    code = os.fspath(code_dir)
    if code not in sys.path:
        sys.path.insert(0, code)  # the image's /code (or the unpacked bundle's code/) holds the user module
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(
            f"handler {handler}: cannot import {module_name} (code_dir {code}): {type(exc).__name__}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise HandlerError(f"handler {handler}: module {module_name} has no class {class_name}")
    try:
        instance = cls()
    except Exception as exc:
        raise HandlerError(f"handler {handler}: {class_name}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(instance, Handler):
        raise HandlerError(
            f"handler {handler}: {class_name} needs load(model_dir) and predict(inputs) methods"
        )
    return instance


def _specs(handler: str, attr: str, value: object) -> tuple[TensorSpec, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(s, TensorSpec) for s in value):
        raise HandlerError(f"handler {handler}: '{attr}' must be a list of modelpack.serve.TensorSpec")
    return tuple(value)
