"""Attacks from a hostile registry, each scripted with two servers on 127.0.0.1: the registry, and another
host it points us to. Credentials must never reach the second; listings and bodies stay bounded."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from support.clirun import run_cli
from support.registry_helpers import blob, opener
from support.scripted import Scripted, scripted_server

from modelpack.errors import RegistryError
from modelpack.oci import mediatypes
from modelpack.oci.model import MAX_MANIFEST_BYTES, Descriptor
from modelpack.registry import RegistryClient, RegistryRepository, RetryPolicy
from modelpack.registry.dockerconfig import Credential
from modelpack.registry.pages import MAX_LIST_BYTES, MAX_PAGES
from modelpack.registry.transport import MAX_BODY_BYTES

USER, PASSWORD, TOKEN = "alice", "pa55word-Secret", "t0ken-Secret"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SUBJECT = "sha256:" + "a" * 64
Answer = tuple[int, dict[str, str], bytes]
Route = Callable[[str, str], Answer]


class Host(Scripted):
    """A scripted host that records (method, path, Authorization) of each request and answers by route."""

    def __init__(self, route: Route) -> None:
        super().__init__()
        self.route = route
        self.seen: list[tuple[str, str, str | None]] = []

    def handle(self, request: BaseHTTPRequestHandler, n: int) -> None:
        # Headers and body leave in two writes: without this, Nagle and delayed ACKs cost 40 ms a request.
        request.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seen.append((request.command, request.path, request.headers.get("Authorization")))
        status, headers, body = self.route(request.command, request.path)
        request.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            request.send_header(k, v)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    def authorizations(self) -> list[str]:
        return [a for _, _, a in self.seen if a]


class Registry(Host):
    """Demands Basic credentials, or a Bearer token from its own realm (`/token`, which takes the Basic
    credentials), on every /v2/ path; or none with scheme "anonymous". `route` answers the rest."""

    def __init__(self, route: Route, scheme: str = "basic") -> None:
        super().__init__(route)
        self.scheme = scheme
        self.host = ""

    def handle(self, request: BaseHTTPRequestHandler, n: int) -> None:
        request.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        auth = request.headers.get("Authorization")
        if request.path.startswith("/token") and auth == BASIC:
            self._answer(request, 200, json.dumps({"token": TOKEN}).encode())
        elif self.scheme != "anonymous" and auth != (BASIC if self.scheme == "basic" else f"Bearer {TOKEN}"):
            self._answer(request, 401, b"")
        else:
            super().handle(request, n)

    def _answer(self, request: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        self.seen.append((request.command, request.path, request.headers.get("Authorization")))
        realm = f"http://{self.host}/token"
        challenge = 'Basic realm="r"' if self.scheme == "basic" else f'Bearer realm="{realm}",service="r"'
        request.send_response(status)
        request.send_header("WWW-Authenticate", challenge)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def _head_404(method: str, path: str) -> Answer:
    return 404, {}, b""


def client(host: str) -> RegistryClient:
    return RegistryClient(
        host,
        credentials=lambda _: Credential(USER, PASSWORD),
        retry=RetryPolicy(attempts=2, base_delay=0.05, max_total=5),
    )


def index_body(*digests: str) -> bytes:
    manifests = [{"mediaType": mediatypes.OCI_MANIFEST, "digest": d, "size": 2} for d in digests]
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
    return json.dumps(index).encode()


# Item 1: credentials only to the registry's (scheme, host, port)


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_upload_location_on_another_host_gets_no_credentials(scheme: str) -> None:
    data = b"weights" * 1000
    desc = blob(data)
    other = Host(lambda m, p: (201, {"Docker-Content-Digest": desc.digest}, b""))
    with scripted_server(other) as other_host:

        def route(method: str, path: str) -> Answer:
            if method == "HEAD":
                return 404, {}, b""
            return 202, {"Location": f"http://{other_host}/upload/1?state=x"}, b""

        registry = Registry(route, scheme)
        with scripted_server(registry) as host, client(host) as c:
            registry.host = host
            result = RegistryRepository(c, "acme/iris").push_blob(desc, opener(data))
    assert result.how == "upload"
    assert [(m, p.split("?")[0]) for m, p, _ in other.seen] == [("PUT", "/upload/1")]
    assert other.authorizations() == []
    sent = BASIC if scheme == "basic" else f"Bearer {TOKEN}"
    assert sent in registry.authorizations()  # the registry itself did get them


def test_redirect_to_another_host_asking_for_credentials_gets_none() -> None:
    # An anonymous-pull registry redirects a blob GET; the other host answers 401 with a token realm of
    # its own. Its challenge must not be learnt: the registry's password would go to that realm.
    other = Host(_head_404)
    with scripted_server(other) as other_host:
        other.route = _realm_at(other_host)
        registry = Registry(lambda m, p: (307, {"Location": f"http://{other_host}/blob"}, b""), "anonymous")
        with (
            scripted_server(registry) as host,
            client(host) as c,
            pytest.raises(RegistryError, match=r"never sent to another host") as e,
            RegistryRepository(c, "acme/iris").read_blob(blob(b"x")) as chunks,
        ):
            b"".join(chunks)
    assert [p for _, p, _ in other.seen] == ["/blob"]
    assert other.authorizations() == []
    assert "check its configured external URL" in str(e.value)


def _realm_at(other_host: str) -> Route:
    def answer(method: str, path: str) -> Answer:
        if path.startswith("/token"):
            return 200, {}, json.dumps({"token": "stolen"}).encode()
        return 401, {"WWW-Authenticate": f'Bearer realm="http://{other_host}/token"'}, b""

    return answer


def test_redirect_to_storage_on_another_host_is_followed_without_credentials() -> None:
    data = b"layer bytes"
    other = Host(lambda m, p: (200, {}, data))
    with scripted_server(other) as other_host:
        registry = Registry(lambda m, p: (307, {"Location": f"http://{other_host}/signed?sig=1"}, b""))
        with (
            scripted_server(registry) as host,
            client(host) as c,
            RegistryRepository(c, "acme/iris").read_blob(blob(data)) as chunks,
        ):
            assert b"".join(chunks) == data
    assert other.seen and other.authorizations() == []


def test_tag_page_on_another_host_is_refused_and_never_merged() -> None:
    other = Host(lambda m, p: (200, {}, json.dumps({"tags": ["planted"]}).encode()))
    with scripted_server(other) as other_host:
        link = f'<http://{other_host}/v2/acme/iris/tags/list?last=a>; rel="next"'
        registry = Registry(lambda m, p: (200, {"Link": link}, json.dumps({"tags": ["a"]}).encode()))
        refused = r"next page is on another host \(http://127\.0\.0\.1:"
        with (
            scripted_server(registry) as host,
            client(host) as c,
            pytest.raises(RegistryError, match=refused),
        ):
            RegistryRepository(c, "acme/iris").list_tags()
    assert other.seen == []


def test_referrers_page_on_another_host_is_refused() -> None:
    other = Host(lambda m, p: (200, {"Content-Type": mediatypes.OCI_INDEX}, index_body("sha256:" + "b" * 64)))
    with scripted_server(other) as other_host:
        link = f'<http://{other_host}/v2/acme/iris/referrers/{SUBJECT}?page=2>; rel="next"'
        headers = {"Content-Type": mediatypes.OCI_INDEX, "Link": link}
        registry = Registry(lambda m, p: (200, headers, index_body("sha256:" + "c" * 64)))
        refused = r"referrers of .* next page is on another host"
        with (
            scripted_server(registry) as host,
            client(host) as c,
            pytest.raises(RegistryError, match=refused),
        ):
            RegistryRepository(c, "acme/iris").referrers(SUBJECT)
    assert other.seen == []


def test_a_port_is_another_origin_and_the_registry_keeps_its_credentials() -> None:
    with client("127.0.0.1:5000") as c:
        assert c.on_registry("http://127.0.0.1:5000/v2/x?y=1")
        assert c.on_registry("http://127.0.0.1:5000")
        assert not c.on_registry("http://127.0.0.1:5001/v2/x")
        assert not c.on_registry("https://127.0.0.1:5000/v2/x")
        assert not c.on_registry("http://localhost:5000/v2/x")
    with client("ghcr.io") as c:
        assert c.on_registry("https://ghcr.io:443/v2/") and c.on_registry("https://GHCR.io/v2/")
        assert not c.on_registry("http://ghcr.io/v2/")


# Item 4: pagination is bounded


class Pager(Registry):
    """Tag or referrers pages whose next link is `next_link(n)`; stops linking after `stop` pages so the
    test ends (with the wrong answer) on a client that does not bound the listing itself."""

    def __init__(self, kind: str, next_link: Callable[[int], str], stop: int) -> None:
        super().__init__(self.page)
        self.kind, self.next_link, self.stop, self.pages = kind, next_link, stop, 0

    def page(self, method: str, path: str) -> Answer:
        self.pages += 1
        headers = {"Link": f'<{self.next_link(self.pages)}>; rel="next"'} if self.pages < self.stop else {}
        if self.kind == "tags":
            return 200, headers, json.dumps({"tags": [f"t{self.pages}"]}).encode()
        return 200, {**headers, "Content-Type": mediatypes.OCI_INDEX}, index_body("sha256:" + "d" * 64)


def _list(kind: str, c: RegistryClient) -> object:
    repo = RegistryRepository(c, "acme/iris")
    return repo.list_tags() if kind == "tags" else repo.referrers(SUBJECT)


def _path(kind: str) -> str:
    return "/v2/acme/iris/tags/list" if kind == "tags" else f"/v2/acme/iris/referrers/{SUBJECT}"


@pytest.mark.parametrize("kind", ["tags", "referrers"])
def test_a_page_linking_to_itself_stops_at_once(kind: str) -> None:
    pager = Pager(kind, lambda n: _path(kind), stop=60)
    looped = r"links back to a page already read \(http://127"
    with scripted_server(pager) as host, client(host) as c, pytest.raises(RegistryError, match=looped):
        _list(kind, c)
    assert pager.pages == 1


@pytest.mark.parametrize("kind", ["tags", "referrers"])
def test_pages_that_never_end_stop_at_the_page_bound(kind: str) -> None:
    pager = Pager(kind, lambda n: f"{_path(kind)}?last=t{n}", stop=MAX_PAGES + 20)
    started = time.monotonic()
    endless = rf"goes on past {MAX_PAGES} pages; stopped"
    with scripted_server(pager) as host, client(host) as c, pytest.raises(RegistryError, match=endless):
        _list(kind, c)
    assert pager.pages == MAX_PAGES
    assert time.monotonic() - started < 120


def test_pages_on_the_registry_are_still_followed_and_merged() -> None:
    pager = Pager("tags", lambda n: f"/v2/acme/iris/tags/list?last=t{n}", stop=3)
    with scripted_server(pager) as host, client(host) as c:
        assert RegistryRepository(c, "acme/iris").list_tags(page_size=1) == ["t1", "t2", "t3"]
    paths = [p for _, p, a in pager.seen if a]
    assert paths[0] == "/v2/acme/iris/tags/list?n=1" and paths[1:] == [
        "/v2/acme/iris/tags/list?last=t1",
        "/v2/acme/iris/tags/list?last=t2",
    ]


# Item 10: every body that is not a blob stream is capped


def _socket_slack() -> int:
    """What loopback sockets may hold unread on this machine: the kernel's largest TCP receive and send
    buffers. A fixed 16 MiB held on one machine and failed on another whose tcp_rmem max is 32 MiB."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            total += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
        except (OSError, ValueError, IndexError):
            total += 8 << 20
    return max(total, 16 << 20)


SLACK = _socket_slack()


class Flood(Registry):
    """Answers `target` with `status` and an endless body (64 MiB past every cap and what the sockets may
    buffer), chunked or with its length declared; counts what it managed to write. Everything else goes to
    `route`."""

    TOTAL = (96 << 20) + SLACK

    def __init__(self, target: str, status: int, declare: bool, route: Route, scheme: str = "basic") -> None:
        super().__init__(route, scheme)
        self.target, self.status, self.declare = target, status, declare

    def handle(self, request: BaseHTTPRequestHandler, n: int) -> None:
        if not request.path.startswith(self.target):
            super().handle(request, n)
            return
        if self.scheme == "basic" and request.headers.get("Authorization") != BASIC:
            super().handle(request, n)  # the challenge first, so credentials are in play
            return
        request.send_response(self.status)
        content_type = mediatypes.OCI_INDEX if "referrers" in self.target else "application/json"
        request.send_header("Content-Type", content_type)
        if self.declare:
            request.send_header("Content-Length", str(self.TOTAL))
        else:
            request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        piece = b'"aaaaaaaaaaaaaaa",' * 4096
        for _ in range(self.TOTAL // len(piece)):
            request.wfile.write(piece if self.declare else b"%x\r\n%s\r\n" % (len(piece), piece))
            self.sent += len(piece)
        if not self.declare:
            request.wfile.write(b"0\r\n\r\n")


def _tags(c: RegistryClient) -> object:
    return RegistryRepository(c, "acme/iris").list_tags()


def _referrers(c: RegistryClient) -> object:
    return RegistryRepository(c, "acme/iris").referrers(SUBJECT)


def _manifest(c: RegistryClient) -> object:
    return RegistryRepository(c, "acme/iris").get_manifest("1.0")


def _blob(c: RegistryClient) -> object:
    with RegistryRepository(c, "acme/iris").read_blob(blob(b"x")) as chunks:
        return b"".join(chunks)


CASES = {
    "tags list": ("/v2/acme/iris/tags/list", 200, "basic", _tags, MAX_LIST_BYTES),
    "referrers": ("/v2/acme/iris/referrers/", 200, "basic", _referrers, MAX_MANIFEST_BYTES),
    "token": ("/token", 200, "bearer", _tags, MAX_BODY_BYTES),
    "manifest error": ("/v2/acme/iris/manifests/", 500, "basic", _manifest, MAX_BODY_BYTES),
    "blob error": ("/v2/acme/iris/blobs/", 500, "basic", _blob, MAX_BODY_BYTES),
}


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_flood_of_a_body_is_refused_at_its_cap(case: str, declare: bool) -> None:
    target, status, scheme, call, cap = CASES[case]
    flood = Flood(target, status, declare, _head_404, scheme)
    with scripted_server(flood) as host, client(host) as c:
        flood.host = host
        pattern = rf"(to|from) GET http://{host}{target}.* is over the {cap}-byte"
        with pytest.raises(RegistryError, match=pattern) as e:
            call(c)
        time.sleep(0.2)  # let the server notice the closed connection
    assert "refused" in str(e.value)
    # At most the cap plus what the loopback socket buffers took unread, far from what was offered.
    assert Flood.TOTAL - (cap + SLACK) >= 64 << 20
    assert flood.sent < cap + SLACK, flood.sent
    if declare:
        assert flood.sent < SLACK  # refused on the declared length, before reading


def test_ls_of_a_flooded_tag_list_is_one_error_line() -> None:
    flood = Flood("/v2/acme/iris/tags/list", 200, False, _head_404, "anonymous")
    with scripted_server(flood) as host:
        cli = run_cli("ls", "--json", f"{host}/acme/iris", timeout=120)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1, cli.stderr
    assert cli.stderr.startswith("error: ") and f"{MAX_LIST_BYTES}-byte" in cli.stderr
    assert "internal error" not in cli.stderr


def test_descriptor_lists_of_referrers_still_parse() -> None:
    registry = Registry(lambda m, p: (200, {"Content-Type": mediatypes.OCI_INDEX}, index_body(SUBJECT)))
    with scripted_server(registry) as host, client(host) as c:
        found = RegistryRepository(c, "acme/iris").referrers(SUBJECT)
    assert [d.digest for d in found] == [SUBJECT] and isinstance(found[0], Descriptor)
