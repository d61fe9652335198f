"""How a registry's failures read and when they are retried: transport errors and unexpected answers mapped
to one-line errors naming the registry, the retry policy, and Retry-After. RegistryClient.send
(registry/transport.py) applies them; nothing here sends a request."""

from __future__ import annotations

import email.utils
import ssl
from dataclasses import dataclass

import httpx

from modelpack.errors import NotFoundError, RegistryError

RETRY_STATUS = frozenset({429, 502, 503, 504})


class ConnectionLost(RegistryError):
    """The connection broke or timed out mid-request (the registry may hold part of what was sent)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_total: float = 120.0


def transport_failure(api_host: str, e: httpx.TransportError) -> RegistryError:
    if is_tls_error(e):
        return RegistryError(
            f"TLS verification of {api_host} failed: its certificate is signed by an unknown CA",
            hint="pass --ca-file with the registry's CA certificate, or --insecure to skip verification",
        )
    if isinstance(e, httpx.ConnectError):
        return RegistryError(
            f"cannot connect to {api_host}: {reason(e)}",
            hint="is the registry running and the host:port right?",
        )
    if isinstance(e, httpx.TimeoutException):
        return ConnectionLost(f"{api_host} timed out ({type(e).__name__})")
    return ConnectionLost(f"connection to {api_host} broke: {reason(e)}")


def status_failure(
    api_host: str, response: httpx.Response, what: str, where: str
) -> NotFoundError | RegistryError:
    """An unexpected answer as an error naming what was asked and where."""
    status = response.status_code
    if status == 404:
        return NotFoundError(f"{what} not found in {where}")
    return RegistryError(f"{what} in {where}: {api_host} answered HTTP {status}{error_detail(response)}")


def is_tls_error(e: BaseException) -> bool:
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text.splitlines()[0][:200]


def error_detail(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f" ({first.get('code')}: {first.get('message')})"
    except (ValueError, AttributeError, IndexError, TypeError, httpx.ResponseNotRead):
        return ""


def retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
