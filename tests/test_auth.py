"""docker config.json credentials, credential helpers, challenges, token caching and login."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from modelpack.errors import AuthError, InputError
from modelpack.registry import RegistryClient, RegistryRepository, login
from modelpack.registry.auth import parse_challenges
from modelpack.registry.dockerconfig import Credential, DockerConfig, config_dir, credentials_from_docker

SECRET = "s3cr3t-Pa55"


def write_config(directory: Path, data: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data))
    return directory


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeHelpers:
    """Stands in for docker-credential-* programs: records calls, answers from a dict per helper."""

    def __init__(self, stores: dict[str, dict[str, tuple[str, str]]]) -> None:
        self.stores = stores
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, argv: Sequence[str], stdin: bytes) -> tuple[int, bytes, bytes]:
        program, action = argv[0], argv[1]
        self.calls.append((f"{program} {action}", stdin))
        name = program.removeprefix("docker-credential-")
        if name not in self.stores:
            return 127, b"", b"not found"
        store = self.stores[name]
        if action == "get":
            found = store.get(stdin.decode())
            if found is None:
                return 1, b"credentials not found in native keychain\n", b""
            return (
                0,
                json.dumps({"ServerURL": stdin.decode(), "Username": found[0], "Secret": found[1]}).encode(),
                b"",
            )
        if action == "store":
            obj = json.loads(stdin)
            store[obj["ServerURL"]] = (obj["Username"], obj["Secret"])
            return 0, b"", b""
        return 1, b"", b"unknown action"


def test_config_dir_from_env(tmp_path: Path) -> None:
    assert config_dir({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path
    assert config_dir({"HOME": "/home/u"}) == Path("/home/u/.docker")


def test_auths_base64_and_plain_and_identity_token(tmp_path: Path) -> None:
    d = write_config(
        tmp_path,
        {
            "auths": {
                "127.0.0.1:5000": {"auth": b64(f"alice:{SECRET}")},
                "https://ghcr.io/v1/": {"username": "bob", "password": SECRET},
                "https://index.docker.io/v1/": {"auth": b64("carol:"), "identitytoken": "refresh-xyz"},
            }
        },
    )
    config = DockerConfig.load(d)
    assert config.credential("127.0.0.1:5000") == Credential("alice", SECRET)
    assert config.credential("ghcr.io") == Credential("bob", SECRET)  # URL-form keys are normalised
    hub = config.credential("docker.io")
    assert hub is not None and hub.identity_token == "refresh-xyz" and hub.username == "carol"
    assert config.credential("other.example") is None


def test_cred_helpers_win_over_creds_store_and_token_username(tmp_path: Path) -> None:
    d = write_config(
        tmp_path,
        {
            "credsStore": "desktop",
            "credHelpers": {"ghcr.io": "gh"},
            "auths": {"quay.io": {"auth": b64("file:user")}},
        },
    )
    helpers = FakeHelpers(
        {
            "desktop": {
                "127.0.0.1:5000": ("dan", SECRET),
                "https://index.docker.io/v1/": ("<token>", "idtok"),
            },
            "gh": {"ghcr.io": ("erin", SECRET)},
        }
    )
    config = DockerConfig.load(d)
    assert config.credential("ghcr.io", helpers) == Credential("erin", SECRET)
    assert config.credential("127.0.0.1:5000", helpers) == Credential("dan", SECRET)
    assert config.credential("docker.io", helpers) == Credential(identity_token="idtok")
    assert config.credential("quay.io", helpers) == Credential("file", "user")  # helper says not found
    assert ("docker-credential-gh get", b"ghcr.io") in helpers.calls
    assert ("docker-credential-desktop get", b"https://index.docker.io/v1/") in helpers.calls


def test_missing_helper_is_a_clear_auth_error(tmp_path: Path) -> None:
    d = write_config(tmp_path, {"credsStore": "nosuch"})
    with pytest.raises(AuthError, match=r"docker-credential-nosuch .* is not installed"):
        DockerConfig.load(d).credential("ghcr.io", FakeHelpers({}))


def test_malformed_config_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(InputError, match=r"config\.json is not valid JSON"):
        DockerConfig.load(tmp_path)


def test_credential_repr_masks_secrets() -> None:
    for cred in (Credential("u", SECRET), Credential(identity_token=SECRET)):
        assert SECRET not in repr(cred) and SECRET not in str(cred) and SECRET not in f"{cred}"
        assert "***" in repr(cred)


def test_parse_challenges() -> None:
    [bearer] = parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    basic, second = parse_challenges('Basic realm="a \\"quoted\\" realm", Bearer realm=https://x/t,service=y')
    assert basic.params["realm"] == 'a "quoted" realm'
    assert second.params == {"realm": "https://x/t", "service": "y"}
    assert parse_challenges("") == []


class TokenServer:
    """A scripted registry + token realm on one MockTransport: Bearer only, tokens keyed by scope."""

    def __init__(self, password: str, post_flow: bool = False) -> None:
        self.password = password
        self.post_flow = post_flow
        self.token_requests: list[httpx.Request] = []
        self.issued: dict[str, str] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            self.token_requests.append(request)
            if request.method == "POST":
                form = dict(x.split("=", 1) for x in request.read().decode().split("&"))
                ok = form.get("grant_type") == "refresh_token" and form.get("refresh_token") == self.password
                scope = form.get("scope", "").replace("%3A", ":").replace("%2F", "/").replace("%2C", ",")
            else:
                ok = request.headers.get("authorization") == "Basic " + b64(f"user:{self.password}")
                scope = " ".join(request.url.params.get_list("scope"))
            if not ok:
                return httpx.Response(401)
            token = f"tok{len(self.issued)}"
            self.issued[token] = scope
            return httpx.Response(
                200, json={"access_token" if self.post_flow else "token": token, "expires_in": 300}
            )
        auth = request.headers.get("authorization", "")
        needed = "repository:a/b:pull"
        if auth.startswith("Bearer ") and needed in self.issued.get(auth[7:], ""):
            return httpx.Response(200, json={"tags": ["v1"]})
        return httpx.Response(
            401,
            headers={
                "WWW-Authenticate": f'Bearer realm="https://auth.test/token",service="reg.test",scope="{needed}"'
            },
        )


def make(server: TokenServer, cred: Credential | None) -> RegistryClient:
    return RegistryClient(
        "reg.test", credentials=lambda _: cred, transport=httpx.MockTransport(server), sleep=lambda _: None
    )


def test_bearer_token_fetched_once_per_scope_and_reused() -> None:
    server = TokenServer(SECRET)
    client = make(server, Credential("user", SECRET))
    repo = RegistryRepository(client, "a/b")
    assert repo.list_tags() == ["v1"]
    assert repo.list_tags() == ["v1"]
    assert len(server.token_requests) == 1
    token_request = server.token_requests[0]
    assert token_request.url.params["service"] == "reg.test"
    assert token_request.url.params["account"] == "user"


def test_refused_login_is_not_retried_and_names_registry_and_login() -> None:
    server = TokenServer(SECRET)
    client = make(server, Credential("user", "wrong-" + SECRET))
    with pytest.raises(AuthError) as info:
        RegistryRepository(client, "a/b").list_tags()
    message = str(info.value)
    assert message == "reg.test refused the credentials for a/b (run `modelpack login reg.test`)"
    assert SECRET not in message
    assert len(server.token_requests) == 1


def test_identity_token_uses_the_oauth2_refresh_flow() -> None:
    server = TokenServer("refresh-" + SECRET, post_flow=True)
    client = make(server, Credential(identity_token="refresh-" + SECRET))
    assert RegistryRepository(client, "a/b").list_tags() == ["v1"]
    assert [r.method for r in server.token_requests] == ["POST"]


def test_anonymous_bearer_without_credentials_asks_to_log_in() -> None:
    server = TokenServer(SECRET)
    with pytest.raises(AuthError, match=r"modelpack login reg\.test"):
        RegistryRepository(make(server, None), "a/b").list_tags()


def basic_registry(password: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") == "Basic " + b64(f"user:{password}"):
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="test"'})

    return httpx.MockTransport(handler)


def test_login_writes_docker_config_and_preserves_other_keys(tmp_path: Path) -> None:
    d = write_config(tmp_path, {"auths": {"other.example": {"auth": b64("x:y")}}, "psFormat": "table"})
    path = login("reg.test", "user", SECRET, d, transport=basic_registry(SECRET))
    data = json.loads(path.read_text())
    assert data["psFormat"] == "table"
    assert data["auths"]["other.example"] == {"auth": b64("x:y")}
    assert data["auths"]["reg.test"] == {"auth": b64(f"user:{SECRET}")}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # and what login wrote is what the client then reads
    assert credentials_from_docker(d)("reg.test") == Credential("user", SECRET)


def test_login_with_creds_store_goes_through_the_helper(tmp_path: Path) -> None:
    d = write_config(tmp_path, {"credsStore": "desktop"})
    helpers = FakeHelpers({"desktop": {}})
    login("docker.io", "user", SECRET, d, transport=basic_registry(SECRET), runner=helpers)
    assert helpers.stores["desktop"]["https://index.docker.io/v1/"] == ("user", SECRET)
    written = (d / "config.json").read_text()
    assert SECRET not in written and b64(f"user:{SECRET}") not in written


def test_login_refused_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match=r"reg\.test refused the credentials") as info:
        login("reg.test", "user", "wrong", tmp_path, transport=basic_registry(SECRET))
    assert "wrong" not in str(info.value)
    assert not (tmp_path / "config.json").exists()
