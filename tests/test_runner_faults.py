"""`modelpack test` when the test cannot run: a container that exits at once, no engine, a pull that fails.
Each is TestNotRunError (exit 3), never TestFailedError (exit 1, the model's fault)."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.engine import Engine
from fixtures.registry import RegistryProcess

from modelpack.errors import TestNotRunError
from modelpack.testing.container import serving_container
from modelpack.testing.engine import engine_client, pulled

pytestmark = pytest.mark.slow


@pytest.fixture
def exiting_image(docker_engine: Engine) -> Iterator[str]:
    """An image whose entrypoint prints a line and exits 7 at once, built offline FROM the base image."""
    tag = f"modelpack-test/exits-at-once:{secrets.token_hex(4)}"
    dockerfile = (
        f"FROM {docker_engine.local_base_image}\n"
        'ENTRYPOINT ["sh", "-c", "echo config file /etc/model.yaml is missing >&2; exit 7"]\n'
    )
    docker_engine.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    try:
        yield tag
    finally:
        docker_engine.client.images.remove(tag, force=True)


@pytest.mark.engine
def test_a_container_that_exits_at_once_is_reported_at_once_with_its_logs(
    exiting_image: str, docker_engine: Engine
) -> None:
    before = {c.id for c in docker_engine.client.containers.list(all=True)}
    started = time.monotonic()
    with pytest.raises(TestNotRunError) as err, serving_container(exiting_image, ready_timeout=300):
        pytest.fail("an exited container was reported ready")
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert "exited with code 7 before it was ready" in message, message
    assert "config file /etc/model.yaml is missing" in message  # its own last log lines
    assert elapsed < 60, f"took {elapsed:.0f} s: it waited for the ready timeout"  # 300 s timeout above
    assert err.value.exit_code == 3
    assert {c.id for c in docker_engine.client.containers.list(all=True)} <= before  # removed


def test_no_engine_is_test_not_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # nobody listens there
    with pytest.raises(TestNotRunError, match="no Docker engine answers") as err:
        engine_client()
    assert err.value.exit_code == 3 and "--runtime local" in str(err.value)


@pytest.mark.engine
def test_an_image_the_engine_cannot_pull_is_exit_3(registry: RegistryProcess, docker_engine: Engine) -> None:
    pinned = f"{registry.host}/t/never-pushed-{secrets.token_hex(3)}@sha256:{'e' * 64}"
    with pytest.raises(TestNotRunError, match="could not pull") as err, pulled(docker_engine.client, pinned):
        pytest.fail("pulled an image that is in no registry")
    assert err.value.exit_code == 3 and pinned in str(err.value)


@pytest.mark.engine
def test_an_image_the_engine_already_had_is_kept(docker_engine: Engine) -> None:
    present = docker_engine.client.images.get(docker_engine.base_ref)
    with pulled(docker_engine.client, docker_engine.base_ref) as image:
        assert image == docker_engine.base_ref
    assert docker_engine.client.images.get(docker_engine.base_ref).id == present.id  # not removed
