"""The default TLS context loads its CA bundle at the first handshake, and verifies exactly as before."""

from __future__ import annotations

import httpx
import pytest
from fixtures.registry import RegistryProcess

from modelpack.errors import RegistryError
from modelpack.registry.tls import LazyCAContext
from modelpack.registry.transport import RegistryClient


def test_no_ca_is_loaded_until_a_tls_connection(tls_registry: RegistryProcess) -> None:
    ctx = LazyCAContext()
    assert ctx.cert_store_stats()["x509_ca"] == 0
    assert ctx.verify_mode.name == "CERT_REQUIRED" and ctx.check_hostname
    with httpx.Client(verify=ctx) as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
        client.get(f"https://{tls_registry.host}/v2/")  # the test CA is not in the default bundle
    assert ctx.cert_store_stats()["x509_ca"] > 100


def test_the_bundle_honours_ssl_cert_file(
    tls_registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))  # as httpx's default context does
    with httpx.Client(verify=LazyCAContext()) as client:
        assert client.get(f"https://{tls_registry.host}/v2/").status_code == 401  # TLS verified, auth asked


def test_a_loopback_registry_upgraded_to_tls_is_still_verified(tls_registry: RegistryProcess) -> None:
    with RegistryClient(tls_registry.host, credentials=lambda _: None) as client:
        assert client.plain_http  # loopback: plain HTTP first, as docker
        with pytest.raises(RegistryError, match="unknown CA"):
            client.send("GET", "/v2/")
