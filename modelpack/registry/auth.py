"""Registry authentication: Basic and Bearer challenges, a token per (registry, scope), no retried refusal.

The flow is docker's: a request goes out with whatever we already hold; a 401 names the scheme (and, for
Bearer, the token realm); we fetch a token for exactly the scopes the request needs and send it again once.
A second 401 after fresh credentials is a refusal, reported at once: retrying a wrong password only
earns a lockout on registries that count failures.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from modelpack.errors import AuthError, RegistryError
from modelpack.registry.dockerconfig import TOKEN_USERNAME, Credential

CredentialSource = Callable[[str], Credential | None]
Send = Callable[[httpx.Request], httpx.Response]
Clock = Callable[[], float]

DEFAULT_TOKEN_TTL = 60.0  # the token spec's default when expires_in is absent
_ITEM_RE = re.compile(r'([A-Za-z0-9_.!#$%&\'*+^`|~-]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?')


def no_credentials(_: str) -> Credential | None:
    return None


@dataclass(frozen=True)
class Challenge:
    """One WWW-Authenticate challenge: `scheme` lowercased, its parameters as given."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse `Bearer realm="...",service="...",scope="..."` / `Basic realm="..."` (several allowed)."""
    out: list[tuple[str, dict[str, str]]] = []
    for m in _ITEM_RE.finditer(header):
        name, quoted, bare = m.groups()
        if quoted is None and bare is None:
            out.append((name.lower(), {}))
        elif out:
            out[-1][1][name.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    return [Challenge(scheme=scheme, params=params) for scheme, params in out]


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float


def _basic(cred: Credential) -> str:
    user, secret = (cred.username, cred.password)
    if cred.identity_token:
        user, secret = (cred.username or TOKEN_USERNAME, cred.identity_token)
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


def _repo_of(scopes: Sequence[str]) -> str | None:
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) >= 3 and parts[0] == "repository":
            return ":".join(parts[1:-1])
    return None


class Authenticator:
    """Holds one registry's challenge and tokens. Thread-safe: parallel transfers share it."""

    def __init__(self, registry: str, source: CredentialSource, clock: Clock, login_hint: str) -> None:
        self.registry = registry
        self._source = source
        self._clock = clock
        self._login_hint = login_hint
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._cred: Credential | None = None
        self._cred_loaded = False

    def __repr__(self) -> str:
        return f"Authenticator(registry={self.registry!r}, tokens={len(self._tokens)})"

    def credential(self) -> Credential | None:
        with self._lock:
            if not self._cred_loaded:
                self._cred = self._source(self.registry)
                self._cred_loaded = True
            return self._cred

    def authorization(self, scopes: Sequence[str], send: Send) -> str | None:
        """The Authorization value to send up front, from what earlier challenges taught us."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            cred = self.credential()
            return _basic(cred) if cred else None
        if challenge.scheme == "bearer":
            key = tuple(sorted(scopes))
            with self._lock:
                token = self._tokens.get(key)
            if token is not None and token.expires_at > self._clock():
                return f"Bearer {token.value}"
            return f"Bearer {self._fetch_token(challenge, scopes, send).value}"
        return None

    def after_unauthorized(
        self, response: httpx.Response, scopes: Sequence[str], used: str | None, send: Send
    ) -> str:
        """A 401 came back: learn the challenge and return fresh credentials to retry with, or raise."""
        challenges = parse_challenges(response.headers.get("www-authenticate", ""))
        challenge = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if challenge is None:
            raise self.error(scopes, refused=False)
        with self._lock:
            self._challenge = challenge
            self._tokens.pop(tuple(sorted(scopes)), None)
        if challenge.scheme == "basic":
            cred = self.credential()
            if cred is None:
                raise self.error(scopes, refused=False)
            fresh = _basic(cred)
            if fresh == used:
                raise self.error(scopes, refused=True)
            return fresh
        extra = challenge.params.get("scope")
        wanted = list(scopes) + ([s for s in extra.split(" ") if s and s not in scopes] if extra else [])
        return f"Bearer {self._fetch_token(challenge, wanted, send).value}"

    def error(self, scopes: Sequence[str], *, refused: bool) -> AuthError:
        repo = _repo_of(scopes)
        where = f"{self.registry}/{repo}" if repo else self.registry
        if refused and self.credential() is not None:
            target = f" for {repo}" if repo else ""
            return AuthError(
                f"{self.registry} refused the credentials{target}",
                hint=f"run `modelpack login {self._login_hint}`",
            )
        if refused:
            return AuthError(
                f"{self.registry} denied access to {where} without credentials",
                hint=f"run `modelpack login {self._login_hint}`",
            )
        return AuthError(f"{where} requires authentication", hint=f"run `modelpack login {self._login_hint}`")

    def denied(self, scopes: Sequence[str], response: httpx.Response | None = None) -> AuthError:
        """Credentials accepted, permission lacking (403, or a 401 for insufficient scope)."""
        challenges = parse_challenges(response.headers.get("www-authenticate", "")) if response else []
        insufficient = any(c.params.get("error") == "insufficient_scope" for c in challenges)
        if response is not None and response.status_code == 401 and not insufficient:
            return self.error(scopes, refused=True)
        if self.credential() is None:
            return self.error(scopes, refused=False)
        repo = _repo_of(scopes)
        actions = next((s.rsplit(":", 1)[1] for s in scopes if s.startswith("repository:")), "access")
        where = f" {repo}" if repo else ""
        return AuthError(
            f"{self.registry} denied {actions} on{where or ' this registry'} to the logged-in user",
            hint=f"check the user's rights, or log in as someone else: `modelpack login {self._login_hint}`",
        )

    def _fetch_token(self, challenge: Challenge, scopes: Sequence[str], send: Send) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"{self.registry} sent a Bearer challenge without a realm")
        cred = self.credential()
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in scopes]
        response: httpx.Response | None = None
        if cred is not None and cred.identity_token:
            # docker's OAuth2 flow: the identity token is a refresh token, POSTed as a form.
            form = {k: str(v) for k, v in params[:1]} | {
                "scope": " ".join(scopes),
                "grant_type": "refresh_token",
                "client_id": "modelpack",
                "refresh_token": cred.identity_token,
            }
            response = send(httpx.Request("POST", realm, data=form))
            if response.status_code in (404, 405):
                response = None  # a realm without the POST flow: fall back to GET with the token as password
        if response is None:
            headers = {}
            if cred is not None:
                headers["Authorization"] = _basic(cred)
                if cred.username and cred.username != TOKEN_USERNAME:
                    params.append(("account", cred.username))
            response = send(httpx.Request("GET", realm, params=params, headers=headers))
        if response.status_code in (401, 403):
            raise self.error(scopes, refused=True)
        if response.status_code != 200:
            raise RegistryError(f"token service for {self.registry} answered HTTP {response.status_code}")
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL)
        except (ValueError, AttributeError, TypeError):
            raise RegistryError(f"token service for {self.registry} returned malformed JSON") from None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"token service for {self.registry} returned no token")
        # Renew a little early so a token never expires between our check and the registry's.
        token = _Token(value=value, expires_at=self._clock() + max(ttl - 10.0, ttl / 2))
        with self._lock:
            self._tokens[tuple(sorted(scopes))] = token
        return token
