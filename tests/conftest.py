"""Shared fixtures: a real registry, a TLS registry with basic auth, and the Docker engine with a base image.

Everything here is a real service on 127.0.0.1. When a service cannot be had the test skips, or fails when
MODELPACK_REQUIRE_ENGINE=1 (CI), see fixtures/require.py.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator

import pytest
from fixtures.engine import Engine, connect_engine
from fixtures.registry import REGISTRY_BIN, RegistryProcess
from fixtures.require import unavailable
from fixtures.tls import make_tls_auth
from support.places import kind  # noqa: F401  (the promote tests' fixture: registry, layout and store)

from modelpack.store.layout import LayoutStore


def _registry_binary() -> str:
    binary = shutil.which("docker-registry") or (REGISTRY_BIN if os.path.exists(REGISTRY_BIN) else None)
    if binary is None:
        unavailable("docker-registry (Debian package docker-registry)", "scripts/test-env install")
    return binary


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """A plain-HTTP distribution registry; `host`, `url`, `storage`, `log_path`, `pid`, stop/start/kill."""
    proc = RegistryProcess(root=tmp_path_factory.mktemp("registry"), binary=_registry_binary())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def registry_without_deletes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """A plain-HTTP distribution registry with deletes disabled (its default): DELETE answers 405."""
    proc = RegistryProcess(
        root=tmp_path_factory.mktemp("registry-nodelete"), binary=_registry_binary(), deletes=False
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """An HTTPS registry with htpasswd auth; adds `ca_file`, `username`, `password` to `registry`'s API."""
    root = tmp_path_factory.mktemp("tls-registry")
    binary = _registry_binary()
    for tool in ("openssl", "htpasswd"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} (Debian packages openssl, apache2-utils)", "scripts/test-env install")
    proc = RegistryProcess(root=root, tls=make_tls_auth(root / "tls"), binary=binary)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A fresh repository name per test: t/<test name>-<random>, valid under the distribution name grammar."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60].strip("-") or "test"
    return f"t/{name}-{secrets.token_hex(3)}"


@pytest.fixture
def registry_repo(registry: RegistryProcess, repo: str) -> str:
    """HOST/REPO in the session registry, fresh per test."""
    return f"{registry.host}/{repo}"


@pytest.fixture(scope="session")
def image_store(tmp_path_factory: pytest.TempPathFactory) -> LayoutStore:
    """One local store for every test that builds serving images: the deps layer (target-platform wheels
    installed into a tree, the slow part of a cold image build) is then built once per lock per session.
    Tests give their variants distinct names or versions so their tags never collide."""
    return LayoutStore(tmp_path_factory.mktemp("image-store"))


@pytest.fixture(scope="session")
def docker_engine(registry: RegistryProcess) -> Engine:
    """The Docker engine on DOCKER_HOST, with the debootstrap base image pushed to `registry` as base_ref."""
    return connect_engine(registry.host)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Attach the registry log tail to a failing test's report: the first place to look."""
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in ("registry", "tls_registry"):
            proc = funcargs.get(name)
            if isinstance(proc, RegistryProcess):
                report.sections.append((f"{name} log ({proc.log_path})", proc.log_tail()))
    return report


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"DOCKER_HOST={os.environ.get('DOCKER_HOST', '(default)')}",
        f"MODELPACK_TEST_BASE_IMAGE={os.environ.get('MODELPACK_TEST_BASE_IMAGE', '(unset)')}",
        f"MODELPACK_REQUIRE_ENGINE={os.environ.get('MODELPACK_REQUIRE_ENGINE', '0')}",
    ]
