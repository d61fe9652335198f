"""The serving runtime: one model over the Open Inference Protocol (KServe V2 REST), in the image and locally.

It imports nothing else from modelpack (only the import-light `modelpack/__init__.py`) and runs with only
its own pinned dependencies (modelpack/serve/requirements.lock): the serving image copies
`modelpack/__init__.py` and `modelpack/serve/**` into its runtime layer and starts
`python3 -m modelpack.serve`.

Routes: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/{name}, /v2/models/{name}/ready,
POST /v2/models/{name}/infer (also under /v2/models/{name}/versions/{version}/...), GET /metadata.

Configuration: `modelpack.serve.config` (ServingConfig: a JSON file, or `python -m modelpack.serve` flags).

Custom handler contract (`handler: "module:Class"`, the module found on `code_dir`, default /code):

    class Handler:
        def __init__(self) -> None: ...                      # no arguments
        def load(self, model_dir: pathlib.Path) -> None: ... # once at startup; ready only after it returns
        def predict(self, inputs: dict[str, numpy.ndarray]) -> dict[str, numpy.ndarray] | numpy.ndarray: ...

A bare ndarray from predict() is one output named "output". Optional attributes `inputs` / `outputs`
(lists of `modelpack.serve.TensorSpec`, set by load()) declare the signature: requests are then validated
against it and /v2/models/{name} reports it. A ValueError from predict() is the caller's fault: a 400 with
its message. Any other exception is a 500 naming a request id, logged with one traceback per kind of
failure (later repeats are one line each); the server keeps serving. With `inference: "thread"` predict()
runs in one worker thread, never concurrently.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TensorSpec"]


def __getattr__(name: str) -> Any:
    # Lazy so `modelpack.serve.config` can be imported (by the CLI, the image builder) without numpy.
    if name == "TensorSpec":
        from modelpack.serve.tensors import TensorSpec

        return TensorSpec
    raise AttributeError(f"module 'modelpack.serve' has no attribute {name!r}")
