"""RegistryClient: one httpx.Client per registry, with auth, retries, timeouts and error mapping.

Everything that talks HTTP to a registry goes through `RegistryClient.send`, so retry policy, credentials
and the wording of errors live in one place. Request bodies are passed as factories so a retry (or the
resend after a 401) streams the body again from its source instead of holding it in memory.

Credentials are scoped to the registry's origin (scheme, host, port), as in docker and ggcr: a URL the
registry hands back (an upload Location, a redirect) on another origin is sent no Authorization, and its
401 challenge is never learnt, so nothing it names (a token realm) is sent the registry's credentials.
Every body read into memory is capped; only blob streams are not.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpcore._sync.http11
import httpx

from modelpack.errors import InputError, NotFoundError, RegistryError
from modelpack.registry.auth import Authenticator, CredentialSource
from modelpack.registry.dockerconfig import credentials_from_docker

# failures.py holds the retry policy and the error wording; these names stay importable from here too
from modelpack.registry.failures import RETRY_STATUS as RETRY_STATUS
from modelpack.registry.failures import ConnectionLost as ConnectionLost
from modelpack.registry.failures import RetryPolicy as RetryPolicy
from modelpack.registry.failures import is_tls_error, retry_after, status_failure, transport_failure
from modelpack.registry.reference import DOCKER_HUB, DOCKER_HUB_API, is_loopback
from modelpack.registry.tls import LazyCAContext

log = logging.getLogger("modelpack.registry")

Body = bytes | Callable[[], Iterable[bytes]] | None
USER_AGENT = "modelpack"
# Token, error and other small answers; list pages pass their own, larger, limit.
MAX_BODY_BYTES = 1 << 20
_READ_CHUNK = 1 << 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
# httpcore asks the socket for 64 KiB at a time, so a blob arrives as 16,384 pieces per GiB, each parsed by
# h11 in Python: 1 MiB reads cut a 256 MiB loopback GET + hash from 0.30 s to 0.22 s (bench/README.md).
# Process-wide, on purpose: every connection this process opens is one of ours.
_RECV_BYTES = 1 << 20
if getattr(httpcore._sync.http11.HTTP11Connection, "READ_NUM_BYTES", 0) < _RECV_BYTES:
    httpcore._sync.http11.HTTP11Connection.READ_NUM_BYTES = _RECV_BYTES


def default_timeout() -> httpx.Timeout:
    # httpx's 5 s default would abort a multi-GiB blob PUT or a slow registry's commit of it.
    return httpx.Timeout(connect=10.0, read=300.0, write=300.0, pool=60.0)


class RegistryClient:
    """A registry's HTTP endpoint. `transport`, `clock`, `sleep` and `credentials` are injectable."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: CredentialSource | None = None,
        transport: httpx.BaseTransport | None = None,
        ca_file: str | Path | None = None,
        insecure: bool = False,
        plain_http: bool | None = None,
        retry: RetryPolicy = RetryPolicy(),
        timeout: httpx.Timeout | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        self.registry = registry
        self.api_host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        # Loopback registries default to plain HTTP as in docker; one that turns out to speak TLS is
        # switched to HTTPS on its first answer (see send). A CA file says the caller expects TLS there.
        self._may_upgrade = plain_http is None and is_loopback(self.api_host) and ca_file is None
        self._upgraded = False
        self._upgrade_lock = threading.Lock()
        if plain_http is None:
            plain_http = is_loopback(self.api_host) and ca_file is None and not insecure
        self.plain_http = plain_http
        self.base_url = f"{'http' if plain_http else 'https'}://{self.api_host}"
        verify: bool | ssl.SSLContext = LazyCAContext()
        if insecure:
            verify = False
        elif ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as e:
                raise InputError(
                    f"CA file {ca_file} cannot be used: {getattr(e, 'strerror', None) or e}",
                    hint="pass a PEM file with the registry's CA certificate",
                ) from None
        self.retry = retry
        self.referrers_api: bool | None = None  # learnt on first use (referrers.py)
        self._clock, self._sleep, self._jitter = clock, sleep, jitter
        self.auth = Authenticator(
            registry, credentials if credentials is not None else credentials_from_docker(), clock, registry
        )
        self.http = httpx.Client(
            transport=transport,
            verify=verify,
            timeout=timeout or default_timeout(),
            follow_redirects=True,  # blob GETs redirect to storage; httpx drops Authorization cross-origin
            headers={"User-Agent": USER_AGENT},
            event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else self.base_url + path_or_url

    def on_registry(self, url: str | httpx.URL) -> bool:
        """Whether `url` is on the registry's own origin, the only one its credentials are sent to."""
        return _origin(httpx.URL(url)) == _origin(httpx.URL(self.base_url))

    def send(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
        max_body: int = MAX_BODY_BYTES,
    ) -> httpx.Response:
        """One logical request: authenticated, retried on 429/502/503/504 and torn connections when
        `retry`, with the body re-made from its factory on each attempt. 401/403 raise AuthError;
        other statuses are returned for the caller to judge. A streamed response must be closed; any
        other is read whole, up to `max_body` bytes (more is a RegistryError)."""
        url = self.url(path_or_url)
        started = self._clock()
        attempt = 0
        own = self.on_registry(url)
        authorization = self.auth.authorization(scopes, self._send_plain) if own else None
        reauthenticated = False
        while True:
            attempt += 1
            request = self._build(method, url, headers, params, body, authorization)
            try:
                response = self.http.send(request, stream=True)
            except httpx.TooManyRedirects:
                raise self._redirect_loop(url) from None
            except httpx.TransportError as e:
                if not retry or is_tls_error(e) or not self._may_retry(attempt, started, None):
                    raise self.transport_error(e) from None
                log.debug("%s %s: %s; retrying", method, _loggable(url), type(e).__name__)
                self._backoff(attempt, None)
                continue
            status = response.status_code
            log.debug("%s %s -> %d", method, _loggable(url), status)
            if (self._may_upgrade or self._upgraded) and status == 400 and self._speaks_tls(response, url):
                url = "https://" + url.removeprefix("http://")
                continue
            self._may_upgrade = False
            if status in (401, 403) and not (own and self.on_registry(response.url)):
                response.close()
                raise self._foreign_refusal(method, response)
            if status == 401 and not reauthenticated:
                response.close()
                authorization = self.auth.after_unauthorized(
                    response, scopes, authorization, self._send_plain
                )
                reauthenticated = True
                continue
            if status in (401, 403):
                response.close()
                raise self.auth.denied(scopes, response)
            if status in RETRY_STATUS and retry and self._may_retry(attempt, started, response):
                response.close()
                self._backoff(attempt, response)
                continue
            if not stream:
                try:
                    self.read_body(response, max_body)
                except ConnectionLost:
                    if not retry or not self._may_retry(attempt, started, None):
                        raise
                    self._backoff(attempt, None)
                    continue
            return response

    def read_body(
        self, response: httpx.Response, limit: int = MAX_BODY_BYTES, what: str = "", kind: str = "body"
    ) -> bytes:
        """Read a (streamed) response whole, so `.content`/`.json()` work, refusing it past `limit` bytes
        (decoded: a gzip bomb counts at its inflated size). The response is closed afterwards."""
        try:
            if hasattr(response, "_content"):  # read already (a mock transport's answer)
                if len(response.content) > limit:
                    raise self._too_big(response, limit, what, kind)
                return response.content
            # A HEAD's Content-Length is the size of what a GET would send (a blob): nothing comes.
            declared = response.headers.get("content-length", "") if response.request.method != "HEAD" else ""
            if declared.isdigit() and int(declared) > limit:
                raise self._too_big(response, limit, what, kind)
            buf = bytearray()
            for chunk in response.iter_bytes(_READ_CHUNK):
                buf += chunk
                if len(buf) > limit:
                    raise self._too_big(response, limit, what, kind)
        except httpx.TransportError as e:
            raise self.transport_error(e) from None
        finally:
            response.close()
        # What Response.read() itself stores; iter_bytes() was used instead only to stop at `limit`.
        response._content = bytes(buf)
        return response._content

    def _too_big(self, response: httpx.Response, limit: int, what: str, kind: str) -> RegistryError:
        where = f"{response.request.method} {_loggable(str(response.request.url))}"
        return RegistryError(
            f"{f'{what} from {where}' if what else f'the answer to {where}'} is over the {limit}-byte {kind} "
            "limit; refused",
            hint="the registry or a proxy in front of it is misbehaving",
        )

    def _foreign_refusal(self, method: str, response: httpx.Response) -> RegistryError:
        """A 401/403 from an origin that is not the registry: its challenge is not ours to answer."""
        other = response.url.netloc.decode("ascii", "replace")
        asked = "asked for credentials" if response.status_code == 401 else "refused it (HTTP 403)"
        return RegistryError(
            f"{method} {_loggable(str(response.url))}, a URL {self.api_host} sent us to, {asked}; "
            f"credentials for {self.api_host} are never sent to another host ({other})",
            hint="the registry hands out URLs on another host: check its configured external URL",
        )

    def _speaks_tls(self, response: httpx.Response, url: str) -> bool:
        """Go's TLS servers answer plain HTTP with this 400: the registry wants HTTPS after all."""
        body = self.read_body(response)
        with self._upgrade_lock:
            if self._upgraded:  # concurrent first requests (parallel blob HEADs) all met the 400: all switch
                return url.startswith(f"http://{self.api_host}/")
            if not self._may_upgrade or not url.startswith(self.base_url):
                return False
            if response.request.method == "HEAD":  # the answer to a HEAD has no body to tell: ask a GET
                probe = self.http.build_request("GET", f"http://{self.api_host}/v2/")
                try:
                    body = self.read_body(self.http.send(probe, stream=True))
                except (httpx.HTTPError, RegistryError):
                    body = b""
            if b"HTTP request to an HTTPS server" not in body:
                self._may_upgrade = False
                return False
            self.base_url = "https://" + self.api_host
            self.plain_http = False
            self._upgraded = True  # before _may_upgrade goes False: a reader always sees one of them set
            self._may_upgrade = False
            return True

    def _send_plain(self, request: httpx.Request) -> httpx.Response:
        """For the token service: retried like any request, never re-authenticated, its answer capped."""
        started, attempt = self._clock(), 0
        while True:
            attempt += 1
            try:
                response = self.http.send(request, stream=True)
            except httpx.TooManyRedirects:
                raise self._redirect_loop(str(request.url)) from None
            except httpx.TransportError as e:
                if is_tls_error(e) or not self._may_retry(attempt, started, None):
                    raise self.transport_error(e) from None
                self._backoff(attempt, None)
                continue
            if response.status_code in RETRY_STATUS and self._may_retry(attempt, started, response):
                response.close()
                self._backoff(attempt, response)
                continue
            try:
                self.read_body(response, what="the token service's answer")
            except ConnectionLost:
                if not self._may_retry(attempt, started, None):
                    raise
                self._backoff(attempt, None)
                continue
            return response

    def _build(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        body: Body,
        authorization: str | None,
    ) -> httpx.Request:
        h = dict(headers or {})
        if authorization:
            h["Authorization"] = authorization
        content: Any = body() if callable(body) else body
        return self.http.build_request(method, url, headers=h, params=params, content=content)

    def _may_retry(self, attempt: int, started: float, response: httpx.Response | None) -> bool:
        if attempt >= self.retry.attempts:
            return False
        return self._clock() - started + self._delay(attempt, response) <= self.retry.max_total

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            after = retry_after(response.headers.get("retry-after"), time.time())
            if after is not None:
                return min(after, self.retry.max_total)
        backoff = min(self.retry.max_delay, self.retry.base_delay * 2.0 ** (attempt - 1))
        return float(backoff * (0.5 + self._jitter() / 2))

    def backoff(self, attempt: int) -> None:
        """Sleep before retry number `attempt` of a multi-request operation (e.g. a new upload session)."""
        self._sleep(self._delay(attempt, None))

    def _backoff(self, attempt: int, response: httpx.Response | None) -> None:
        self._sleep(self._delay(attempt, response))

    def _redirect_loop(self, url: str) -> RegistryError:
        return RegistryError(
            f"{self.api_host} redirected {_loggable(url)} more than {self.http.max_redirects} times; gave up",
            hint="the registry or a proxy in front of it is misconfigured",
        )

    def transport_error(self, e: httpx.TransportError) -> RegistryError:
        return transport_failure(self.api_host, e)

    def status_error(self, response: httpx.Response, what: str, where: str) -> NotFoundError | RegistryError:
        """Map an unexpected answer to an error naming what was asked and where."""
        return status_failure(self.api_host, response, what, where)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme)


def _loggable(url: str) -> str:
    # Query strings may carry signed storage URLs or upload state: keep them out of logs.
    return str(httpx.URL(url).copy_with(query=None))
