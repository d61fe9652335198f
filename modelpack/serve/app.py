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
a tenth of the runtime's own time per request (its consequences: infer.py).

Every request is counted (metrics.py) and logged (requestlog.py) after its answer is sent, under the id
the client gave or one made here, echoed as x-request-id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from modelpack import __version__
from modelpack.serve.config import ServingConfig
from modelpack.serve.handlers import LoadedModel, load_handler
from modelpack.serve.infer import RequestError, answer
from modelpack.serve.metrics import CONTENT_TYPE, Metrics
from modelpack.serve.requestlog import RequestIds, RequestLog

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Loader = Callable[[ServingConfig], LoadedModel]

log = logging.getLogger("modelpack.serve")

_JSON_HEADERS = [(b"content-type", b"application/json")]
_METRICS_HEADERS = [(b"content-type", CONTENT_TYPE)]


# Below this a request is handled on the event loop (a thread hop costs more than decoding it); above it,
# in a worker thread. 16 MiB of JSON took 1.9 s to decode on a 2-core box (measured), so 256 KiB stalls
# the loop ~30 ms at most.
OFF_LOOP_BYTES = 256 * 1024
RETRY_AFTER_S = b"1"


def default_loader(config: ServingConfig) -> LoadedModel:
    return load_handler(config.handler, config.model_dir, config.code_dir, config.model, config.onnx_threads)


class ServingApp:
    """ASGI 3 app serving one model; `load()` runs once (the lifespan startup calls it in a thread)."""

    def __init__(
        self,
        config: ServingConfig,
        loader: Loader = default_loader,
        *,
        metrics: Metrics | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.config = config
        self._loader = loader
        self.model: LoadedModel | None = None
        self.draining = False  # set by SIGTERM: readiness answers 503 while in-flight requests finish
        self._ids = RequestIds()
        self.metrics = metrics or Metrics(
            config.name, config.version, config.bundle_digest, config.index_digest, None
        )
        self.log = request_log or RequestLog(
            config.name,
            config.version,
            enabled=config.request_log,
            level=config.request_log_level,
            sample=config.request_log_sample,
        )
        self._executor = ThreadPoolExecutor(1, "predict") if config.inference == "thread" else None
        # Large requests with `inference: "inline"` go to this one thread, never more: concurrency for them
        # would multiply their memory, which the in-flight budget bounds anyway.
        self._large = self._executor or ThreadPoolExecutor(1, "large-request")
        self._inflight = 0  # request body bytes received or being processed, over all connections
        prefix = f"/v2/models/{config.name}"
        versioned = {f"{prefix}/versions/{config.version}"} if config.version else set()
        self._model_paths = frozenset({prefix, *versioned})

    def load(self) -> None:
        began = time.perf_counter()
        self.model = self._loader(self.config)
        self.metrics.loaded(time.perf_counter() - began)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._watch_termination()
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
                self.log.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _watch_termination(self) -> None:
        """Readiness turns false the moment SIGTERM arrives, before uvicorn starts draining: the handler
        uvicorn installed (it stops the listener, then waits for in-flight requests) is chained, not replaced.
        """
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (an app embedded in a test's thread)
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def on_signal(signum: int, frame: Any, previous: Any = previous) -> None:
                self.draining = True
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, on_signal)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        request_id = self._ids.of(scope["headers"])
        metrics = self.metrics
        metrics.started()
        extra: tuple[tuple[bytes, bytes], ...] = ()
        held = [0]  # this request's share of the in-flight budget, given back once it is answered
        content = _JSON_HEADERS
        body: Any
        try:
            if scope["path"] == "/metrics" and scope["method"] == "GET" and self.config.metrics:
                status, body, content = 200, metrics.exposition(), _METRICS_HEADERS
            else:
                status, body = await self._route(scope, receive, held, request_id)
        except RequestError as exc:
            status, body, extra = exc.status, {"error": str(exc)}, exc.headers
            metrics.error(exc.kind)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            status, body = 500, {"error": "internal server error (details in the server log)"}
            metrics.error("internal")
        finally:
            self._inflight -= held[0]
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = [
            *content,
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", request_id.encode()),
            *extra,
        ]
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            seconds = time.perf_counter() - began
            path = scope["path"]
            metrics.finished(path, status, seconds, held[0], len(payload))
            if self.log.enabled:
                self.log.request(scope["method"], path, status, seconds, request_id, held[0], len(payload))

    async def _route(
        self, scope: Scope, receive: Receive, held: list[int], request_id: str
    ) -> tuple[int, Any]:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if path.startswith("/v2/models/"):
            return await self._model_route(scope, method, path, receive, held, request_id)
        if method != "GET":
            raise RequestError(f"method {method} not allowed on {path}; use GET", 405)
        if path == "/v2/health/live":
            return 200, {"live": True}
        if path == "/v2/health/ready":
            if self.draining:
                return 503, {"ready": False, "draining": True}
            return (200, {"ready": True}) if self.model else (503, {"ready": False})
        if path == "/v2":
            return 200, {"name": "modelpack", "version": __version__, "extensions": []}
        if path == "/metadata":
            return 200, self._metadata()
        raise RequestError(f"no route {path}", 404)

    async def _model_route(
        self, scope: Scope, method: str, path: str, receive: Receive, held: list[int], request_id: str
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
            ready = self.model is not None and not self.draining
            return (200 if ready else 503), {"name": self.config.name, "ready": ready}
        model = self.model
        if model is None:
            raise RequestError(f"model '{self.config.name}' is still loading", 503)
        if action == "":
            return 200, self._model_metadata(model)
        body = await self._read_body(receive, _content_length(scope), held)
        if len(body) <= OFF_LOOP_BYTES and self._executor is None:
            return 200, answer(self.config, model, body, request_id)
        loop = asyncio.get_running_loop()
        return 200, await loop.run_in_executor(self._large, answer, self.config, model, body, request_id)

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
                "overloaded",
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
            "parameters": self._identity(),
        }

    def _identity(self) -> dict[str, Any]:
        c = self.config
        return {
            "release_version": c.version,
            "bundle_digest": c.bundle_digest,
            "index_digest": c.index_digest,
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
            "ready": self.model is not None and not self.draining,
            "runtime": {"name": "modelpack", "version": __version__, "pid": os.getpid()},
        }


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # uvicorn's parser refuses it before the app sees it
    return None
