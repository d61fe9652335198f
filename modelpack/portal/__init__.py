"""`modelpack ui`: a read-only web portal over releases in registries, and its static export.

Layer: below the CLI, above `modelpack.api`, which is all it reads data through. No database: immutable
content is cached on disk by digest under the store's cache directory; tags, referrers and history are
re-read after a few seconds (modelpack/portal/cache.py).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelpack.errors import RefusedError, UsageError

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from modelpack.api import Targets
    from modelpack.portal.data import Source
    from modelpack.portal.server import Limits
    from modelpack.portal.static import Exported

DEFAULT_PORT = 8765


def cache_dir(targets: Targets) -> Path:
    return Path(targets.store_path) / "cache" / "portal"


def open_source(targets: Targets, repositories: Sequence[str], *, ttl: float | None = None) -> Source:
    from modelpack.portal.cache import DEFAULT_TTL, DiskCache, Memo
    from modelpack.portal.data import Source

    if not repositories:
        raise UsageError("ui needs at least one repository", hint="modelpack ui ghcr.io/acme/iris")
    for repo in repositories:
        if targets.open(repo).ref is not None:
            raise UsageError(f"{repo!r} names a release: give the repository alone")
    return Source(
        targets, repositories, DiskCache(cache_dir(targets)), Memo(DEFAULT_TTL if ttl is None else ttl)
    )


def check_listen(host: str, token: str | None) -> None:
    """Loopback needs nothing; any other address only with a token (the pages show internal releases)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise RefusedError(
            f"--host {host}: listening beyond this machine needs --token",
            hint="export MODELPACK_UI_TOKEN=$(openssl rand -hex 16) (not --token: argv shows in ps), "
            "or keep the default 127.0.0.1",
        )


def open_server(
    targets: Targets,
    repositories: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    log: Callable[[str], None] | None = None,
    limits: Limits | None = None,
) -> ThreadingHTTPServer:
    """A server ready to `serve_forever()`; `server_address` says where it listens (port 0: any free)."""
    from modelpack.portal.server import Limits, make_server
    from modelpack.portal.views import Pages

    check_listen(host, token)
    if token is not None and len(token) < 16:
        raise UsageError("--token is too short: use at least 16 characters", hint="openssl rand -hex 16")
    if token is not None and not _TOKEN.fullmatch(token):  # it becomes a cookie value as it is
        raise UsageError(
            "the token holds a character a cookie cannot carry: use letters, digits and - _ . ~ + / =",
            hint="openssl rand -hex 16",
        )
    source = open_source(targets, repositories)
    for repo in repositories:  # the registry clients exist before threads share them
        targets.open(repo)
    try:
        return make_server(
            Pages(source), host, port, token=token, log=log or (lambda _: None), limits=limits or Limits()
        )
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host}:{port}: {e.strerror}", hint="choose another --port"
        ) from None


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def export(targets: Targets, repositories: Sequence[str], dest: Path) -> Exported:
    """The portal's pages as a static site under `dest`: how many pages, and what was skipped and why."""
    from modelpack.portal.static import export_site

    return export_site(open_source(targets, repositories, ttl=3600.0), Path(dest))
