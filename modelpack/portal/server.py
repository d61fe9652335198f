"""The portal's HTTP server: the stdlib ThreadingHTTPServer, GET and HEAD only.

Why not an ASGI framework: the portal is a read-only page server for one person on their own machine (or
a team behind `--token`), every page is a handful of registry reads, and the stdlib server needs no new
dependency, no event loop and nothing to configure. Its known weaknesses (no HTTP/2, no keep-alive
tuning, a thread per connection) do not matter at this load. What does matter is handled here: only GET
and HEAD, bounded request lines (the stdlib's own limit), no credential ever rendered (the registries are
read with the user's docker credentials, which never reach a page), the token compared in constant time,
and a Content-Security-Policy that lets no script run at all: the pages need none.

A thread per connection is a resource a client can hold, so connections are bounded as the serving runtime
bounds them (`Limits`): the request head must arrive within a deadline, a connection that sends nothing
for the idle timeout is closed, an answer the client does not read is dropped, and past the cap a new
connection gets a 503 at once instead of a thread (one request per connection: HTTP/1.0, no keep-alive).
"""

from __future__ import annotations

import hmac
import io
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from markupsafe import escape

from modelpack.errors import ModelpackError, NotFoundError, UsageError
from modelpack.portal.data import Query
from modelpack.portal.views import CSP as PAGE_CSP
from modelpack.portal.views import Pages
from modelpack.text import clean

COOKIE = "modelpack_portal"
CSP = PAGE_CSP + "; frame-ancestors 'none'"
MAX_QUERY_FIELDS = 32


@dataclass(frozen=True)
class Limits:
    """What one client may hold. Page renders are registry reads: the deadline covers the request's
    arrival, not the answer's computation."""

    request_timeout_s: float = 10.0  # the request line and headers must have arrived within this
    idle_timeout_s: float = 5.0  # nothing arriving (or nothing of the answer read) for this long: closed
    max_connections: int = 64  # connections handled at once; one more gets a 503 without a thread


_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/(index\.html)?$"), "index"),
    (re.compile(r"^/r/(?P<slug>[^/]+)/(index\.html)?$"), "repository"),
    (re.compile(rf"^/r/(?P<slug>[^/]+)/v/(?P<tag>{_TAG})\.html$"), "version"),
    (re.compile(rf"^/r/(?P<slug>[^/]+)/compare/(?P<a>{_TAG})/(?P<b>{_TAG})\.html$"), "compare"),
    (re.compile(r"^/r/(?P<slug>[^/]+)/compare\.html$"), "compare_form"),
    (re.compile(rf"^/r/(?P<slug>[^/]+)/env/(?P<env>{_TAG})\.html$"), "environment"),
    (re.compile(r"^/r/(?P<slug>[^/]+)/lineage\.html$"), "lineage"),
    (re.compile(r"^/r/(?P<slug>[^/]+)/d/(?P<digest>sha256-[0-9a-f]{64})\.html$"), "dataset"),
    (re.compile(r"^/r/(?P<slug>[^/]+)/runs\.html$"), "runs"),
    (re.compile(r"^/r/(?P<slug>[^/]+)/run/(?P<run>[A-Za-z0-9][A-Za-z0-9_.-]{0,120})\.html$"), "run"),
]


def route(pages: Pages, path: str, query: dict[str, list[str]]) -> tuple[int, str, str | None]:
    """(status, HTML, redirect location) for a GET of `path`."""
    for pattern, name in ROUTES:
        m = pattern.match(path)
        if m is None:
            continue
        args = m.groupdict()
        slug = args.get("slug")
        if slug is not None and slug not in pages.src.repo_of:
            raise NotFoundError(f"no repository {slug!r} in this portal")
        if name == "index":
            return 200, pages.index(), None
        assert slug is not None
        if name == "repository":
            return 200, pages.repository(slug, _query(query)), None
        if name == "version":
            return 200, pages.version(slug, args["tag"]), None
        if name == "compare":
            return 200, pages.compare(slug, args["a"], args["b"]), None
        if name == "compare_form":
            a, b = (query.get("a") or [""])[0], (query.get("b") or [""])[0]
            if not (re.fullmatch(_TAG, a) and re.fullmatch(_TAG, b)):
                raise UsageError("compare needs two versions: ?a=VERSION&b=VERSION")
            return 302, "", f"compare/{a}/{b}.html"
        if name == "environment":
            return 200, pages.environment(slug, args["env"], next(iter(query.get("metric", [])), None)), None
        if name == "runs":
            return 200, pages.experiment(slug, _query(query)), None
        if name == "run":
            return 200, pages.run(slug, args["run"]), None
        if name == "dataset":
            return 200, pages.dataset(slug, args["digest"].replace("-", ":", 1)), None
        return 200, pages.lineage(slug), None
    raise NotFoundError(f"no page {path}")


def _query(query: dict[str, list[str]]) -> Query:
    return Query(
        (query.get("sort") or [""])[0] or None,
        (query.get("asc") or [""])[0] in ("1", "true", "on"),
        # one box holds several conditions, as `ls` takes several --where: all must hold
        tuple(w for text in query.get("where", []) for w in text.split()),
    )


def make_server(
    pages: Pages,
    host: str,
    port: int,
    *,
    token: str | None = None,
    log: Callable[[str], None] = lambda _: None,
    limits: Limits = Limits(),
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "modelpack-portal"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # the stdlib's reader, replaced (the socket closes only when no file holds it)
            deadline = time.monotonic() + limits.request_timeout_s
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline, limits.idle_timeout_s))

        def log_message(self, format: str, *args: Any) -> None:
            log(clean(redact(format % args)))  # the token never reaches a log, however it is spelt

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _refuse(self) -> None:
            self._send(
                405, _page("405", "the portal is read-only: GET and HEAD only"), True, {"Allow": "GET, HEAD"}
            )

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

        def _authorized(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
            """(allowed, came with ?token= to be swapped for a cookie)"""
            if token is None:
                return True, False
            offered = []
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                offered.append(auth[7:])
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    offered.append(value)
            from_query = any(_same(q, token) for q in query.get("token", []))
            # a cookie alone lets a request in, but only a matching ?token= is swapped for a cookie: a wrong
            # one beside a good cookie must not reach Set-Cookie (header injection, cookie tossing, logout)
            return from_query or any(_same(o, token) for o in offered), from_query

        def _serve(self, body: bool) -> None:
            parts = urlsplit(self.path)
            if token is None and not _loopback_host(self.headers.get("Host", ""), host):
                # DNS rebinding: a web page whose name now resolves to 127.0.0.1 must not read the portal
                self._send(421, _page("421", "this portal answers only to its loopback address"), body)
                return
            try:
                query = parse_qs(parts.query, max_num_fields=MAX_QUERY_FIELDS)
            except ValueError:
                self._send(400, _page("400", f"more than {MAX_QUERY_FIELDS} query fields"), body)
                return
            allowed, swap = self._authorized(query)
            if not allowed:
                self._send(401, _page("401", "this portal needs its token: open it with ?token=TOKEN"), body)
                return
            if swap:  # the token leaves the address bar (and the history) for an HttpOnly cookie
                assert token is not None
                cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"  # ours, never the request's
                self._send(303, "", body, {"Location": parts.path or "/", "Set-Cookie": cookie})
                return
            try:
                status, html, location = route(pages, unquote(parts.path), query)
            except NotFoundError as e:
                status, html, location = 404, _page("404", e.message), None
            except UsageError as e:
                status, html, location = 400, _page("400", e.message), None
            except ModelpackError as e:
                status, html, location = 502, _page("502", e.message), None
            except Exception as e:  # a bug of ours: say so without the traceback's registry content
                log(f"portal: internal error on {clean(parts.path)}: {type(e).__name__}")
                status, html, location = 500, _page("500", "internal error (see the portal's log)"), None
            self._send(status, html, body, {"Location": location} if location else None)

        def _send(self, status: int, html: str, body: bool, headers: dict[str, str] | None = None) -> None:
            data = html.encode()
            # the answer goes out under the idle timeout: a client that reads none of it is dropped
            self.connection.settimeout(limits.idle_timeout_s)
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return _Server((host, port), Handler, limits.max_connections, log)


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each bounded by the idle timeout and all of them by one deadline: a client
    trickling a byte a second keeps no thread past the deadline (a socket timeout alone would let it)."""

    def __init__(self, sock: socket.socket, deadline: float, idle_s: float) -> None:
        self._sock, self._deadline, self._idle = sock, deadline, idle_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not complete within the deadline")
        self._sock.settimeout(min(self._idle, left))
        return self._sock.recv_into(buffer)


_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
    b"Content-Length: 27\r\nConnection: close\r\n\r\nthe portal is busy: retry\r\n"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the stdlib's 5 leaves a burst unaccepted, its deadlines not yet started

    def __init__(
        self, address: tuple[str, int], handler: Any, max_connections: int, log: Callable[[str], None]
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._log = log
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # at the cap: answered and closed on the accept thread
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # one line, never a traceback with a client's bytes in it
        self._log(f"portal: connection from {client_address[0]} dropped: {clean(repr(sys.exc_info()[1]))}")


def _same(offered: str, token: str) -> bool:
    return hmac.compare_digest(offered.encode(), token.encode())


_QUERY_FIELD = re.compile(r"(?<=[?&])([^=&\s'\"]*)=([^&\s'\"]*)")


def redact(line: str) -> str:
    """`line` with the value of every query field that parse_qs would read as `token` replaced by ***
    (`?%74oken=` and `?to%6Ben=` are the token to the server, so they are to the log)."""

    def sub(m: re.Match[str]) -> str:
        return f"{m[1]}=***" if unquote(m[1].replace("+", " ")) == "token" else m[0]

    return _QUERY_FIELD.sub(sub, line)


_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]"}


def _loopback_host(header: str, listening: str) -> bool:
    """Whether a request's Host header names this machine's loopback (or the address listened on)."""
    name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    return name.lower() in _LOOPBACK_NAMES | {listening}


def _page(code: str, message: str) -> str:
    phrase = HTTPStatus(int(code)).phrase
    return (
        f"<!doctype html><meta charset=utf-8><title>{code} {phrase}</title>"
        f"<h1>{code} {phrase}</h1><p class=error>{escape(clean(message))}</p><p><a href='/'>portal</a></p>"
    )
