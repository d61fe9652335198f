"""An HTTP proxy on 127.0.0.1 in front of the real registry that answers 500 to the requests `refuse`
picks and forwards everything else: for faults a real registry does not produce on demand, seen through
the CLI (which builds its own clients, so an httpx transport cannot be slipped in)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Refuse = Callable[[str, str], bool]  # (method, path) -> answer 500?
Rewrite = Callable[[str, str, bytes], bytes]  # (method, path, upstream body) -> the body the client gets
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


@contextlib.contextmanager
def refusing_proxy(upstream: str, refuse: Refuse, rewrite: Rewrite | None = None) -> Iterator[str]:
    """Serves on 127.0.0.1; yields its host:port. `upstream` is the registry's host:port; `rewrite` changes
    the bodies of forwarded answers (a registry that lies in a listing)."""
    client = httpx.Client(base_url=f"http://{upstream}", timeout=60.0)
    refused: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if refuse(self.command, self.path):
                refused.append(f"{self.command} {self.path}")
                self._answer(500, {"Content-Type": "application/json"}, b'{"errors":[{"code":"DENIED",'
                             b'"message":"referrers are read-only here"}]}')  # fmt: skip
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            r = client.request(self.command, self.path, headers=headers, content=body)
            out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP}
            if "location" in r.headers:  # keep the client talking to the proxy
                out = {k: v for k, v in out.items() if k.lower() != "location"}
                out["Location"] = r.headers["location"].replace(upstream, host)
            body = rewrite(self.command, self.path, r.content) if rewrite else r.content
            self._answer(r.status_code, out, body)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        client.close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that drops a connection mid-read is not the test's subject; stderr stays the CLI's
