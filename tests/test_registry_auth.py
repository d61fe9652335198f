"""Auth against real servers: a bearer-token realm in front of the real registry; the TLS+htpasswd one."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from support.registry_helpers import blob, opener, push_artifact, random_bytes
from support.terminal import on_terminal

from modelpack.errors import AuthError, ModelpackError, RegistryError
from modelpack.registry import RegistryClient, RegistryRepository, credentials_from_docker, login
from modelpack.registry.dockerconfig import Credential

USER, PASSWORD = "tokenuser", "b3arer-Secret-pw"
HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "content-length"}


class BearerFront:
    """A token realm (`/token`, Basic-authenticated) and a registry front that demands Bearer tokens with
    the right scope, forwarding authorised requests to the real registry."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.tokens: dict[str, set[str]] = {}
        self.token_requests: list[list[str]] = []
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                if self.path.startswith("/token"):
                    front.token(self)
                else:
                    front.forward(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def token(self, h: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(h.path).query)
        scopes = query.get("scope", [])
        with self.lock:
            self.token_requests.append(scopes)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if h.headers.get("Authorization") != expected or query.get("service") != ["front"]:
            _reply(h, 401, b'{"details":"incorrect username or password"}')
            return
        value = f"t{len(self.tokens)}"
        granted = set()
        for scope in scopes:
            _, name, actions = scope.split(":", 2)
            granted |= {f"{name}:{a}" for a in actions.split(",")}
        with self.lock:
            self.tokens[value] = granted
        _reply(h, 200, json.dumps({"token": value, "expires_in": 300}).encode())

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        parts = path.split("/")
        marker = next(
            (i for i, p in enumerate(parts) if p in ("blobs", "manifests", "tags", "referrers")), None
        )
        if marker is not None:
            name = "/".join(parts[2:marker])
            action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(h.command, "push")
            auth = h.headers.get("Authorization", "")
            granted = (
                self.tokens.get(auth.removeprefix("Bearer "), set()) if auth.startswith("Bearer ") else set()
            )
            if f"{name}:{action}" not in granted:
                length = int(h.headers.get("Content-Length") or 0)
                if length:
                    h.rfile.read(length)
                challenge = (
                    f'Bearer realm="http://{self.host}/token",service="front",'
                    f'scope="repository:{name}:{"pull" if action == "pull" else "pull," + action}"'
                )
                _reply(h, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
                return
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("authorization", "connection")}
        upstream.request(h.command, h.path, body=body if body else None, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        extra = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        _reply(
            h,
            response.status,
            data,
            extra,
            head=h.command == "HEAD",
            length=int(response.getheader("Content-Length") or len(data)),
        )


def _reply(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    head: bool = False,
    length: int | None = None,
) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if "Content-Type" not in (headers or {}):
        h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(length if length is not None else len(body)))
    h.end_headers()
    if not head:
        h.wfile.write(body)


@pytest.fixture
def front(registry) -> Iterator[BearerFront]:
    f = BearerFront(registry.port)
    yield f
    f.close()


def test_bearer_flow_pushes_and_pulls_with_one_token_per_scope(front, repo) -> None:
    cred = Credential(USER, PASSWORD)
    with RegistryClient(front.host, credentials=lambda _: cred) as client:
        r = RegistryRepository(client, repo)
        rm = push_artifact(r, "1.0", [random_bytes(5000), b"code"])
        assert r.get_manifest("1.0").raw == rm.raw
        assert r.list_tags() == ["1.0"]
    push_scope = [f"repository:{repo}:pull,push"]
    pull_scope = [f"repository:{repo}:pull"]
    assert front.token_requests.count(push_scope) == 1
    assert front.token_requests.count(pull_scope) == 1
    assert len(front.token_requests) == 2


def test_bearer_refused_credentials_fail_once_without_retry(front, repo) -> None:
    cred = Credential(USER, "not-the-password")
    with RegistryClient(front.host, credentials=lambda _: cred) as client, pytest.raises(AuthError) as info:
        RegistryRepository(client, repo).list_tags()
    assert str(info.value) == (
        f"{front.host} refused the credentials for {repo} (run `modelpack login {front.host}`)"
    )
    assert len(front.token_requests) == 1


def test_tls_basic_auth_with_ca_file_after_login(tls_registry, repo, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    login(
        tls_registry.host, tls_registry.username, tls_registry.password, config, ca_file=tls_registry.ca_file
    )
    entry = json.loads((config / "config.json").read_text())["auths"][tls_registry.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{tls_registry.username}:{tls_registry.password}"
    with RegistryClient(
        tls_registry.host, credentials=credentials_from_docker(config), ca_file=tls_registry.ca_file
    ) as client:
        assert client.base_url.startswith("https://")
        r = RegistryRepository(client, repo)
        data = random_bytes(20_000)
        r.push_blob(blob(data), opener(data))
        with r.read_blob(blob(data)) as chunks:
            assert b"".join(chunks) == data


def test_tls_unknown_ca_fails_clearly(tls_registry, repo) -> None:
    cred = Credential(tls_registry.username, tls_registry.password)
    # No flags: a loopback registry is tried over plain HTTP first (as docker does), found to speak TLS,
    # and then refused for its unknown CA.
    with RegistryClient(tls_registry.host, credentials=lambda _: cred) as client:
        with pytest.raises(RegistryError, match="unknown CA") as info:
            RegistryRepository(client, repo).list_tags()
        assert client.base_url == f"https://{tls_registry.host}"
    assert str(info.value) == (
        f"TLS verification of {tls_registry.host} failed: its certificate is signed by an unknown CA "
        "(pass --ca-file with the registry's CA certificate, or --insecure to skip verification)"
    )
    insecure = RegistryClient(tls_registry.host, credentials=lambda _: cred, insecure=True)
    with insecure, pytest.raises(ModelpackError, match="not found"):
        RegistryRepository(insecure, repo).list_tags()  # reached the registry: the repo is just empty


def test_tls_wrong_password_names_registry_and_login(tls_registry, repo) -> None:
    cred = Credential(tls_registry.username, "wrong-password")
    with (
        RegistryClient(tls_registry.host, credentials=lambda _: cred, ca_file=tls_registry.ca_file) as client,
        pytest.raises(AuthError, match=rf"{tls_registry.host} refused the credentials for {repo}"),
    ):
        RegistryRepository(client, repo).list_tags()


def test_no_secret_reaches_logs_errors_or_reprs(tls_registry, front, repo, tmp_path: Path, caplog) -> None:
    secrets = [tls_registry.password, PASSWORD]
    secrets += [
        base64.b64encode(f"{u}:{p}".encode()).decode()
        for u, p in [(tls_registry.username, tls_registry.password), (USER, PASSWORD)]
    ]
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    good = Credential(tls_registry.username, tls_registry.password)
    with RegistryClient(
        tls_registry.host, credentials=lambda _: good, ca_file=tls_registry.ca_file
    ) as client:
        r = RegistryRepository(client, repo)
        push_artifact(r, "v1", [b"weights"])
        texts += [repr(client), repr(client.auth), repr(r), repr(good), str(good)]
    with RegistryClient(front.host, credentials=lambda _: Credential(USER, PASSWORD)) as client:
        push_artifact(RegistryRepository(client, repo), "v1", [b"weights"])
    for password, host, ca in [
        (tls_registry.password + "x", tls_registry.host, tls_registry.ca_file),
        (PASSWORD + "x", front.host, None),
    ]:
        try:
            login(host, "someone", password, tmp_path, ca_file=ca)
        except ModelpackError as e:
            texts += [str(e), repr(e)]
        secrets.append(password)
    try:
        login(tls_registry.host, tls_registry.username, tls_registry.password, tmp_path)  # no CA: TLS fails
    except ModelpackError as e:
        texts += [str(e), repr(e)]
    texts += [record.getMessage() for record in caplog.records]
    assert len(texts) > 20 and any("refused" in t for t in texts)
    blob_text = "\n".join(texts)
    for secret in secrets:
        assert secret not in blob_text


def test_login_on_a_terminal_asks_for_the_password_and_never_echoes_it(tls_registry, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    args = ["login", tls_registry.host, "-u", tls_registry.username, "--ca-file", str(tls_registry.ca_file)]
    done = on_terminal(args, env, {b"Password:": tls_registry.password.encode()})
    assert done.status == 0, done.output
    assert "Password:" in done.output and tls_registry.password not in done.output
    entry = json.loads((config / "config.json").read_text())["auths"][tls_registry.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{tls_registry.username}:{tls_registry.password}"
