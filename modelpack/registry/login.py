"""`login`: check credentials against the registry, then save them where docker keeps them.

Saving in docker's own format (or through its credential helper) means `docker login` and
`modelpack login` are interchangeable: whichever ran last, both tools use the result.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from modelpack.errors import AuthError, UsageError
from modelpack.registry.dockerconfig import Credential, DockerConfig, Runner, subprocess_runner
from modelpack.registry.transport import RegistryClient


def verify_credentials(client: RegistryClient) -> None:
    """GET /v2/ with the client's credentials; raises AuthError when the registry refuses them."""
    try:
        response = client.send("GET", "/v2/")
    except AuthError:
        raise AuthError(
            f"{client.registry} refused the credentials", hint="check the username and password (or token)"
        ) from None
    if response.status_code != 200:
        raise client.status_error(response, "the registry API (/v2/)", client.registry)


def login(
    registry: str,
    username: str,
    password: str,
    config_dir: Path | None = None,
    *,
    runner: Runner = subprocess_runner,
    transport: httpx.BaseTransport | None = None,
    ca_file: str | Path | None = None,
    insecure: bool = False,
    plain_http: bool | None = None,
) -> Path:
    """Verify, then store. Returns the config.json written (a configured helper holds the secret)."""
    if not username or not password:
        raise UsageError("login needs a username and a password", hint="pass -u USER and --password-stdin")
    cred = Credential(username=username, password=password)
    with RegistryClient(
        registry,
        credentials=lambda _: cred,
        transport=transport,
        ca_file=ca_file,
        insecure=insecure,
        plain_http=plain_http,
    ) as client:
        verify_credentials(client)
    config = DockerConfig.load(config_dir)
    config.store(registry, cred, runner)
    return config.path


def logout(registry: str, config_dir: Path | None = None, *, runner: Runner = subprocess_runner) -> bool:
    """Remove the saved credentials for `registry`; returns whether there were any."""
    return DockerConfig.load(config_dir).remove(registry, runner)
