"""The ASGI application: Open Inference Protocol (KServe V2) REST routes plus /metadata.

Hand-written rather than a framework because every route is a few lines and the request path is the hot
loop the runtime benchmark measures. Every failure becomes a JSON `{"error": "..."}`: 400 for a request
the client can fix, 404 for an unknown model or route, 413 for a body over `max_body_bytes`, 500 when the
handler raises or returns something unencodable or an answer over `max_response_bytes`, 503 until the model
is loaded and (with Retry-After) while the request bytes in flight over all connections would exceed
`inflight_bytes`. Requests with bodies over OFF_LOOP_BYTES are decoded, predicted and encoded in a worker
thread, so the event loop (and /v2/health/*) keeps answering while orjson holds the GIL on a big body.
Tracebacks go to the log, never to the client, and no request can stop the server.

JSON is orjson: parsing plus writing a small request costs ~1 us against ~30 us with the stdlib (measured),
a tenth of the runtime's own time per request. Consequences: NaN and infinities in outputs are written as
null (valid JSON, unlike the stdlib's NaN token); integers beyond 64 bits in a request arrive as floats and
are refused for integer datatypes; nesting deeper than 1024 is refused as a 400.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

from modelpack import __version__
from modelpack.serve.config import ServingConfig
from modelpack.serve.handlers import LoadedModel, OnnxHandler, load_handler
from modelpack.serve.tensors import Array, EncodeError, TensorError, decode_input, encode_output

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Loader = Callable[[ServingConfig], LoadedModel]

log = logging.getLogger("modelpack.serve")

_JSON_HEADERS = [(b"content-type", b"application/json")]


# Below this a request is handled on the event loop (a thread hop costs more than decoding it); above it,
# in a worker thread. 16 MiB of JSON took 1.9 s to decode on a 2-core box (measured), so 256 KiB stalls
# the loop ~30 ms at most.
OFF_LOOP_BYTES = 256 * 1024
RETRY_AFTER_S = b"1"


class RequestError(Exception):
    """A request the client must fix; `status` is the HTTP status to answer with."""

    def __init__(
        self, message: str, status: int = 400, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def default_loader(config: ServingConfig) -> LoadedModel:
    return load_handler(config.handler, config.model_dir, config.code_dir, config.model, config.onnx_threads)


class ServingApp:
    """ASGI 3 app serving one model; `load()` runs once (the lifespan startup calls it in a thread)."""

    def __init__(self, config: ServingConfig, loader: Loader = default_loader) -> None:
        self.config = config
        self._loader = loader
        self.model: LoadedModel | None = None
        # Generated request ids: unique per server process, cheaper than a uuid4 per request.
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._executor = ThreadPoolExecutor(1, "predict") if config.inference == "thread" else None
        # Large requests with `inference: "inline"` go to this one thread, never more: concurrency for them
        # would multiply their memory, which the in-flight budget bounds anyway.
        self._large = self._executor or ThreadPoolExecutor(1, "large-request")
        self._inflight = 0  # request body bytes received or being processed, over all connections
        prefix = f"/v2/models/{config.name}"
        versioned = {f"{prefix}/versions/{config.version}"} if config.version else set()
        self._model_paths = frozenset({prefix, *versioned})

    def load(self) -> None:
        self.model = self._loader(self.config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.load)
                except Exception as exc:
                    log.error("model %s could not be loaded: %s", self.config.name, exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                log.info("model %s loaded", self.config.name)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._large.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra: tuple[tuple[bytes, bytes], ...] = ()
        held = [0]  # this request's share of the in-flight budget, given back once it is answered
        try:
            status, body = await self._route(scope, receive, held)
        except RequestError as exc:
            status, body, extra = exc.status, {"error": str(exc)}, exc.headers
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            status, body = 500, {"error": "internal server error (details in the server log)"}
        finally:
            self._inflight -= held[0]
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _route(self, scope: Scope, receive: Receive, held: list[int]) -> tuple[int, Any]:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if path.startswith("/v2/models/"):
            return await self._model_route(scope, method, path, receive, held)
        if method != "GET":
            raise RequestError(f"method {method} not allowed on {path}; use GET", 405)
        if path == "/v2/health/live":
            return 200, {"live": True}
        if path == "/v2/health/ready":
            return (200, {"ready": True}) if self.model else (503, {"ready": False})
        if path == "/v2":
            return 200, {"name": "modelpack", "version": __version__, "extensions": []}
        if path == "/metadata":
            return 200, self._metadata()
        raise RequestError(f"no route {path}", 404)

    async def _model_route(
        self, scope: Scope, method: str, path: str, receive: Receive, held: list[int]
    ) -> tuple[int, Any]:
        action = ""
        if path not in self._model_paths:
            base, _, action = path.rpartition("/")
            if action not in ("ready", "infer") or base not in self._model_paths:
                raise RequestError(f"model not found at {path}; this server serves {self._served()}", 404)
        wanted = "POST" if action == "infer" else "GET"
        if method != wanted:
            raise RequestError(f"method {method} not allowed on {path}; use {wanted}", 405)
        if action == "ready":
            ready = self.model is not None
            return (200 if ready else 503), {"name": self.config.name, "ready": ready}
        model = self.model
        if model is None:
            raise RequestError(f"model '{self.config.name}' is still loading", 503)
        if action == "":
            return 200, self._model_metadata(model)
        body = await self._read_body(receive, _content_length(scope), held)
        if len(body) <= OFF_LOOP_BYTES and self._executor is None:
            return 200, self._answer(model, body)
        loop = asyncio.get_running_loop()
        return 200, await loop.run_in_executor(self._large, self._answer, model, body)

    def _served(self) -> str:
        """`'iris' version 1.2.0 (/v2/models/iris/versions/1.2.0)`: what a caller asking for another version
        (or model) should ask for instead."""
        c = self.config
        if not c.version:
            return f"'{c.name}' (/v2/models/{c.name})"
        at = f"/v2/models/{c.name}"
        return f"'{c.name}' version {c.version} ({at}/versions/{c.version}, or {at})"

    def _reserve(self, held: list[int], size: int) -> None:
        # Reserved before the bytes are read, so a request over budget is refused without buffering it.
        if self._inflight + size > self.config.inflight_limit:
            raise RequestError(
                f"server busy: {self._inflight} request bytes already in flight, the limit is "
                f"{self.config.inflight_limit} (inflight_bytes); retry shortly",
                503,
                ((b"retry-after", RETRY_AFTER_S),),
            )
        self._inflight += size
        held[0] += size

    async def _read_body(self, receive: Receive, declared: int | None, held: list[int]) -> bytes:
        limit = self.config.max_body_bytes
        if declared is not None:
            if declared > limit:
                raise RequestError(f"request body is larger than {limit} bytes (max_body_bytes)", 413)
            self._reserve(held, declared)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body is larger than {limit} bytes (max_body_bytes)", 413)
            if size > held[0]:  # chunked, or more than declared: reserve as it arrives
                self._reserve(held, size - held[0])
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _model_metadata(self, model: LoadedModel) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "versions": [self.config.version] if self.config.version else [],
            "platform": model.platform,
            "inputs": [spec.to_json() for spec in model.inputs or ()],
            "outputs": [spec.to_json() for spec in model.outputs or ()],
        }

    def _metadata(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": c.name,
            "version": c.version,
            "handler": c.handler,
            "bundle_digest": c.bundle_digest,
            "index_digest": c.index_digest,
            "record_summary": dict(c.record_summary),
            "ready": self.model is not None,
            "runtime": {"name": "modelpack", "version": __version__},
        }

    def _answer(self, model: LoadedModel, body: bytes) -> bytes:
        """The encoded answer to an infer body: on the loop for small bodies, in a thread for large ones."""
        request = _parse(body)
        del body  # the decoded request replaces it; do not hold both during predict
        inputs = _inputs(model, request["inputs"])
        wanted = _wanted_outputs(model, request.get("outputs"))
        given = request.get("id")
        request_id = given if isinstance(given, str) else f"{self._id_prefix}-{next(self._ids)}"
        del request
        outputs = _predict(model, inputs, wanted, request_id, self.config.response_limit)
        payload = orjson.dumps(
            {
                "model_name": self.config.name,
                "model_version": self.config.version,
                "id": request_id,
                "outputs": outputs,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        if len(payload) > self.config.response_limit:
            raise _too_big(outputs, len(payload), self.config.response_limit)
        return payload


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # uvicorn's parser refuses it before the app sees it
    return None


# The fewest JSON characters one element of each kind takes ("1," "true,"): a lower bound of the answer's
# size, known before encoding, so an answer that cannot fit is refused before it is built.
_MIN_CHARS = {"BOOL": 5, "BYTES": 3}


def _too_big(outputs: list[dict[str, Any]], size: int, limit: int) -> RequestError:
    shown = ", ".join(f"'{o['name']}' {o['datatype']} {o['shape']}" for o in outputs)
    return RequestError(
        f"the answer would be at least {size} bytes, over max_response_bytes ({limit}); outputs: {shown}; "
        "ask for fewer outputs or a smaller batch, or raise max_response_bytes",
        500,
    )


def _parse(body: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise RequestError("request body is nested too deeply (JSON depth limit 1024)") from None
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("request body must be a JSON object with 'inputs'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("request needs 'inputs': a non-empty list of tensors")
    if "id" in request and not isinstance(request["id"], str):
        raise RequestError("'id' must be a string")
    if "parameters" in request and not isinstance(request["parameters"], dict):
        raise RequestError("'parameters' must be an object")
    return request


def _inputs(model: LoadedModel, raw: list[Any]) -> dict[str, Array]:
    inputs: dict[str, Array] = {}
    for tensor in raw:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        spec = model.input_spec(name) if isinstance(name, str) else None
        if model.inputs is not None and spec is None and isinstance(name, str):
            known = ", ".join(s.name for s in model.inputs)
            raise RequestError(f"unknown input '{name}'; the model's inputs are: {known}")
        try:
            name, array = decode_input(tensor, spec)
        except TensorError as exc:
            raise RequestError(str(exc)) from None
        if name in inputs:
            raise RequestError(f"input '{name}' is given twice")
        inputs[name] = array
    for spec in model.inputs or ():
        if spec.name not in inputs:
            raise RequestError(f"missing input '{spec.name}' ({spec.datatype} {list(spec.shape)})")
    return inputs


def _wanted_outputs(model: LoadedModel, raw: object) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw
    ):
        raise RequestError("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in raw]
    known = [s.name for s in model.outputs] if model.outputs is not None else None
    for name in names:
        if name in model.unservable:
            continue  # the handler answers it with a 500 that names the output's type
        if known is not None and name not in known:
            raise RequestError(f"unknown output '{name}'; the model's outputs are: {', '.join(known)}")
    return names or None


_logged_failures: set[str] = set()


def _log_failure(exc: BaseException, request_id: str) -> None:
    # One traceback per exception type and place, then one line per request: a handler failing on every
    # request must not flood the log with identical tracebacks.
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{type(exc).__name__}@{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else ""
    if where in _logged_failures:
        log.error("handler failed (request id %s): %s: %s", request_id, type(exc).__name__, exc)
        return
    _logged_failures.add(where)
    log.error("handler failed (request id %s)", request_id, exc_info=exc)


def _predict(
    model: LoadedModel, inputs: dict[str, Array], wanted: list[str] | None, request_id: str, limit: int
) -> list[dict[str, Any]]:
    handler = model.handler
    try:
        if isinstance(handler, OnnxHandler):
            result: object = handler.run(inputs, wanted)
        else:
            result = handler.predict(inputs)
    except EncodeError as exc:
        raise RequestError(str(exc), 500) from None
    except ValueError as exc:  # the handler contract: ValueError means the caller sent something wrong
        raise RequestError(str(exc) or "the handler refused the inputs (ValueError)", 400) from None
    except (Exception, SystemExit) as exc:  # a handler calling sys.exit() must not stop the server
        _log_failure(exc, request_id)
        raise RequestError(
            f"handler failed: {type(exc).__name__}: {exc} (request id {request_id})", 500
        ) from None
    if isinstance(result, np.ndarray):
        result = {"output": result}
    if not isinstance(result, Mapping):
        raise RequestError(f"handler returned {type(result).__name__}, not a dict of arrays or an array", 500)
    names = wanted if wanted is not None else list(result)
    outputs = []
    for name in names:
        if name not in result:
            raise RequestError(
                f"unknown output '{name}'; the handler returned: {', '.join(map(str, result))}"
            )
        try:
            outputs.append(encode_output(str(name), result[name]))
        except EncodeError as exc:
            raise RequestError(str(exc), 500) from None
    least = sum(_MIN_CHARS.get(o["datatype"], 2) * int(np.prod(o["shape"])) for o in outputs)
    if least > limit:
        raise _too_big(outputs, least, limit)
    return outputs
