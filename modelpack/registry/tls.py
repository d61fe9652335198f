"""The default TLS context, with its CA bundle loaded at the first handshake instead of at construction.

Parsing the CA bundle takes 30 ms on a quiet machine and over 100 ms on a busy one, and every
RegistryClient needs a context: eagerly built, it was most of a retag's time against a loopback registry
that is only ever spoken to in plain HTTP. Verification is unchanged: the same bundle httpx would use
(certifi, or SSL_CERT_FILE / SSL_CERT_DIR), loaded before any TLS connection is made, including a
loopback registry upgraded to HTTPS or a redirect to HTTPS storage.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any


class LazyCAContext(ssl.SSLContext):
    """A verifying client context (CERT_REQUIRED, hostname checked) that loads its CAs on first use."""

    _loaded: bool
    _lock: threading.Lock

    def __new__(cls) -> LazyCAContext:
        ctx = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        ctx._loaded = False
        ctx._lock = threading.Lock()
        return ctx

    def __init__(self) -> None:  # SSLContext takes the protocol in __new__ only
        pass

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            # As httpx.create_ssl_context(verify=True), which this replaces.
            if os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load()
        return super().wrap_bio(*args, **kwargs)
