"""The serving runtime: one model over the Open Inference Protocol (KServe V2 REST), in the image and locally.

It imports nothing else from modelpack (only the import-light `modelpack/__init__.py`) and runs with only
its own pinned dependencies (modelpack/serve/requirements.lock): the serving image copies
`modelpack/__init__.py` and `modelpack/serve/**` into its runtime layer and starts
`python3 -m modelpack.serve`.

Routes: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/{name}, /v2/models/{name}/ready,
POST /v2/models/{name}/infer (also under /v2/models/{name}/versions/{version}/...), GET /metadata,
GET /metrics (Prometheus, metrics.py). Every request: one JSON line on stdout (requestlog.py), its id echoed
as x-request-id. SIGTERM: readiness 503 at once, the listener closes, in-flight requests get
drain_timeout_s, exit 0 (server.py).

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
runs in one worker thread, never concurrently. With "inline" (the default) predict() runs on the event loop,
except for requests whose body is over 256 KiB: those are decoded, predicted and encoded in one worker thread
so health probes keep answering, and such a predict() may overlap one on the event loop.

Limits (serving config keys, or env MODELPACK_SERVE_<KEY>; defaults sized for a 2-core box, where decoding
16 MiB of JSON held the GIL 1.9 s; measured under attack in tests/test_serve_limits.py: VmHWM 225 MiB,
liveness probes under 0.5 s). Each applies per worker process (`workers`, default one per CPU of the
container's quota): the runtime's memory bound is workers x one worker's (the model, loaded once per worker,
plus these limits), e.g. 2 x 225 MiB for the iris model under that attack:

    max_body_bytes      8 MiB    a larger body is a 413, refused from Content-Length before it is read
    inflight_bytes      16 MiB   (0 = 2 x max_body_bytes) request bytes in flight over all connections;
                                 beyond it a 503 with Retry-After: 1, the body never buffered
    max_response_bytes  32 MiB   (0 = 4 x max_body_bytes) a larger answer is a 500 naming the outputs
    body_timeout_s      30       request head and body must arrive within it, else the connection drops
    write_timeout_s     30       a client reading none of its answer for this long is dropped
    idle_timeout_s      5        an idle keep-alive connection is closed
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
