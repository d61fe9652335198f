"""Helpers shared by test modules (moved from test_hostile_network.py)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = tuple[int, dict[str, str], bytes]


class Scripted:
    """What the server does with request number n (from 0). Override `handle` to misbehave at the socket
    level; `count` and `paths` say what the client asked."""

    def __init__(self, answer: Callable[[int], Answer] | None = None) -> None:
        self.answer = answer or (lambda n: (404, {}, b""))
        self.count = 0
        self.paths: list[str] = []
        self.sent = 0  # body bytes the server managed to write
        self.lock = threading.Lock()

    def take(self, path: str) -> int:
        with self.lock:
            self.paths.append(path)
            self.count += 1
            return self.count - 1

    def handle(self, request: BaseHTTPRequestHandler, n: int) -> None:
        status, headers, body = self.answer(n)
        request.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            request.send_header(k, v)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)


@contextlib.contextmanager
def scripted_server(script: Scripted) -> Iterator[str]:
    """Serve `script` on 127.0.0.1; yields host:port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            n = script.take(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                script.handle(self, n)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
