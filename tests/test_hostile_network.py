"""A hostile or broken registry, scripted on 127.0.0.1 over real sockets: a 50 MB manifest, an endless
redirect, a server that sends one byte a second. The client must stay bounded in bytes, requests and time."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from support.clirun import run_cli
from support.scripted import Scripted, scripted_server

from modelpack.errors import ModelpackError, RegistryError
from modelpack.oci.model import MAX_MANIFEST_BYTES
from modelpack.registry import RegistryClient, RegistryRepository, RetryPolicy


def _client(host: str, **kw: object) -> RegistryClient:
    kw.setdefault("retry", RetryPolicy(attempts=2, base_delay=0.05, max_total=5))
    return RegistryClient(host, credentials=lambda _: None, **kw)  # type: ignore[arg-type]


class HugeManifest(Scripted):
    """A 50 MB 'manifest', written in 64 KiB pieces while the client keeps reading."""

    def __init__(self, declare_length: bool) -> None:
        super().__init__()
        self.declare_length = declare_length

    def handle(self, request: BaseHTTPRequestHandler, n: int) -> None:
        total = 50 * 1024 * 1024
        request.send_response(200)
        request.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        if self.declare_length:
            request.send_header("Content-Length", str(total))
        else:
            request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        piece = b" " * 65536
        for _ in range(total // len(piece)):
            data = piece if self.declare_length else b"%x\r\n%s\r\n" % (len(piece), piece)
            request.wfile.write(data)
            self.sent += len(piece)
        if not self.declare_length:
            request.wfile.write(b"0\r\n\r\n")


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_50mb_manifest_is_refused_without_reading_it_all(declare_length: bool) -> None:
    script = HugeManifest(declare_length)
    with scripted_server(script) as host, _client(host) as client:
        with pytest.raises(RegistryError, match=f"over the {MAX_MANIFEST_BYTES}-byte manifest limit"):
            RegistryRepository(client, "acme/iris").get_manifest("1.0.0")
        time.sleep(0.2)  # let the server notice the closed connection
    # The server could write only what the client read (at most the 4 MiB limit) plus what the loopback
    # socket buffers accepted unread: far from the 50 MB offered.
    assert script.sent < 16 * (1 << 20), script.sent
    assert script.count == 1


def test_endless_redirect_is_bounded_and_clear() -> None:
    script = Scripted(lambda n: (307, {"Location": f"/v2/acme/iris/manifests/hop{n}"}, b""))
    with scripted_server(script) as host:
        started = time.monotonic()
        with _client(host) as client, pytest.raises(ModelpackError):
            RegistryRepository(client, "acme/iris").get_manifest("1.0.0")
        elapsed = time.monotonic() - started
        cli = run_cli("inspect", f"{host}/acme/iris:1.0.0")
    assert script.count <= 2 * 21 + 21  # httpx stops after 20 hops; a retry may add a second round
    assert elapsed < 10
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1, cli.stderr
    assert "redirect" in cli.stderr.lower() and "internal error" not in cli.stderr


class Drip(Scripted):
    """Answers one byte per `interval` seconds: in the status line and headers, or in the body."""

    def __init__(self, where: str, interval: float = 1.0) -> None:
        super().__init__()
        self.where, self.interval = where, interval

    def handle(self, request: BaseHTTPRequestHandler, n: int) -> None:
        body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        if self.where == "body":
            request.wfile.write(head)
            request.wfile.flush()
        for b in (head if self.where == "headers" else b"") + body:
            request.wfile.write(bytes([b]))
            request.wfile.flush()
            self.sent += 1
            time.sleep(self.interval)


@pytest.mark.parametrize("where", ["headers", "body"])
def test_one_byte_a_second_hits_the_read_timeout(where: str) -> None:
    script = Drip(where)
    timeout = httpx.Timeout(5.0, read=0.5)
    with scripted_server(script) as host, _client(host, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(RegistryError, match="timed out"):
            RegistryRepository(client, "acme/iris").get_manifest("1.0.0")
        elapsed = time.monotonic() - started
    # headers: two attempts (the retry policy) of ~0.5 s each; body: the first stalled read ends it
    assert elapsed < 4, elapsed
    assert script.count <= 2


def test_deeply_nested_manifest_is_a_clear_error() -> None:
    nested = b"[" * 200_000
    script = Scripted(lambda n: (200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, nested))
    with scripted_server(script) as host:
        with _client(host) as client, pytest.raises(RegistryError, match="not valid JSON"):
            RegistryRepository(client, "acme/iris").get_manifest("1.0.0")
        cli = run_cli("inspect", f"{host}/acme/iris:1.0.0")
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1, cli.stderr
    assert "internal error" not in cli.stderr
