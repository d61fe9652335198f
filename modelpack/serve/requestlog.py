"""Request ids and the request log: one JSON line per request on stdout, never a body or a tensor.

    {"time": "2026-12-06T15:04:05.123Z", "level": "info", "method": "POST",
     "path": "/v2/models/iris/infer", "status": 200, "duration_ms": 0.41, "bytes_in": 97, "bytes_out": 88,
     "model": "iris", "version": "1.2.0", "request_id": "4bf92f3577b34da6a3ce929d0e0e4736", "pid": 7}

A line's level follows its status: info below 400, warning for 4xx, error for 5xx. `request_log_level`
drops lines below it ("warning" logs failures only); `request_log_sample` keeps that fraction of the info
lines (failures are always kept); `request_log: false` turns the log off. Lines are written with os.write
in batches, at most REQUEST_LOG_FLUSH_S after the request, not one syscall each: a write per line cost
more than the rest of the log (measured in bench/serve_bench.py).

A request id comes from the client's `x-request-id` (up to 128 visible ASCII characters), else the trace
id of a W3C `traceparent`, else it is made here; the answer carries it back as `x-request-id`, and an
infer answer without its own `id` uses it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import secrets
import time
from collections.abc import Iterable

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_LEVEL_NAMES = {20: b'"info"', 30: b'"warning"', 40: b'"error"'}
REQUEST_LOG_FLUSH_S = 0.05
_BATCH_BYTES = 64 * 1024
_CLIENT_ID = re.compile(rb"[\x21-\x7e]{1,128}")  # visible ASCII: safe in a header and a log line
_MAX_PATH = 256
_QUOTES_KEPT = 64  # escaped methods and paths remembered; a client's made-up URLs are escaped each time


class RequestIds:
    """Ids for requests that bring none: unique per process, cheaper than a uuid4 per request."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}-{next(self._count)}"

    def of(self, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The client's id (x-request-id, else traceparent's trace id), else a new one."""
        trace = None
        for key, value in headers:
            if key == b"x-request-id":
                if _CLIENT_ID.fullmatch(value):
                    return value.decode("ascii")
            elif key == b"traceparent":
                trace = _trace_id(value)
        return trace or self.new()


def _trace_id(value: bytes) -> str | None:
    # version-traceid-parentid-flags; an all-zero trace id is invalid (W3C Trace Context, 3.2.2.3)
    parts = value.split(b"-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == b"0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].decode("ascii").lower()


class RequestLog:
    """The per-request JSON lines of one process, batched onto a file descriptor (stdout by default)."""

    def __init__(
        self,
        model: str,
        version: str,
        *,
        enabled: bool = True,
        level: str = "info",
        sample: float = 1.0,
        fd: int = 1,
    ) -> None:
        self.enabled = enabled
        self._model, self._version = model, version
        self._threshold = LEVELS[level]
        self._sample = sample
        self._fd = fd
        self._pid = os.getpid()
        identity = {"model": model, "version": version, "pid": self._pid}
        self._tail = b"," + orjson.dumps(identity)[1:] + b"\n"  # the fields every line ends with
        self._pending: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = b""
        self._milli = -1
        self._milli_stamp = b""
        self._quotes: dict[str, bytes] = {}

    def request(
        self,
        method: str,
        path: str,
        status: int,
        seconds: float,
        request_id: str,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        level = 20 if status < 400 else 30 if status < 500 else 40
        if level < self._threshold:
            return
        if level == 20 and self._sample < 1.0 and random.random() >= self._sample:
            return
        if len(path) > _MAX_PATH:
            path = path[:_MAX_PATH] + "..."
        # Formatted by hand around orjson-escaped strings: a dict and one dumps cost twice as much, and this
        # line is most of what the log costs a request.
        self.write(
            b'{"time":"%s","level":%s,"method":%s,"path":%s,"status":%d,"duration_ms":%.3f,'
            b'"bytes_in":%d,"bytes_out":%d,"request_id":%s%s'
            % (
                self._time(time.time()),
                _LEVEL_NAMES[level],
                self._quoted(method),
                self._quoted(path),
                status,
                seconds * 1000,
                bytes_in,
                bytes_out,
                orjson.dumps(request_id),
                self._tail,
            )
        )

    def line(self, **fields: object) -> None:
        """Any other JSON line (the startup line), written at once."""
        self.write(orjson.dumps({"time": self._time(time.time()).decode(), **fields}) + b"\n")
        self.flush()

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _BATCH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()  # no loop (a worker thread, a test): no later to wait for
                return
            self._timer = loop.call_later(REQUEST_LOG_FLUSH_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return  # stdout closed: the log is lost, the server goes on
            view = view[written:]

    def _quoted(self, text: str) -> bytes:
        """`text` as a JSON string; the few methods and paths a server sees are escaped once each."""
        quoted = self._quotes.get(text)
        if quoted is None:
            quoted = orjson.dumps(text)
            if len(self._quotes) < _QUOTES_KEPT:
                self._quotes[text] = quoted
        return quoted

    def _time(self, now: float) -> bytes:
        milli = int(now * 1000)
        if milli != self._milli:  # at thousands of requests a second, most lines share their millisecond
            self._milli = milli
            second = milli // 1000
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            self._milli_stamp = b"%s.%03dZ" % (self._stamp, milli % 1000)
        return self._milli_stamp
