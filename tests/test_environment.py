"""The test environment is real: a distribution registry, a TLS registry with auth, and a Docker engine."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import httpx
import pytest
from fixtures.engine import Engine
from fixtures.registry import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    digest = _sha256(data)
    start = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202, start.text
    # The Location carries the upload state in its query; the digest is added to it, not put in its place.
    location = httpx.URL(base).join(start.headers["Location"]).copy_merge_params({"digest": digest})
    done = client.put(
        location,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    return digest


def test_registry_stores_and_serves_a_blob(registry: RegistryProcess, repo: str) -> None:
    data = b"modelpack blob " + repo.encode()
    with httpx.Client(timeout=10) as client:
        digest = _push_blob(client, registry.url, repo, data)
        fetched = client.get(f"{registry.url}/v2/{repo}/blobs/{digest}")
    assert fetched.status_code == 200
    assert fetched.content == data
    # Stored on disk in the fixture's storage dir, so the process is the real filesystem-backed registry.
    blob_dir = registry.storage / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:]
    assert (blob_dir / "data").read_bytes() == data


def test_skopeo_sees_a_manifest_pushed_by_the_test(registry: RegistryProcess, repo: str) -> None:
    config = b"{}"
    layer = b"weights"
    with httpx.Client(timeout=10) as client:
        config_digest = _push_blob(client, registry.url, repo, config)
        layer_digest = _push_blob(client, registry.url, repo, layer)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": "application/octet-stream", "digest": layer_digest, "size": len(layer)}
                ],
            },
            separators=(",", ":"),
        ).encode()
        put = client.put(
            f"{registry.url}/v2/{repo}/manifests/v1",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == _sha256(manifest)
    inspected = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert inspected.returncode == 0, inspected.stderr.decode()
    assert inspected.stdout == manifest


def test_registry_restarts_on_the_same_storage(registry: RegistryProcess, repo: str) -> None:
    data = b"survives a SIGKILL"
    with httpx.Client(timeout=10) as client:
        digest = _push_blob(client, registry.url, repo, data)
    old_pid = registry.pid
    registry.kill()
    assert not registry.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{registry.url}/v2/", timeout=2)
    registry.start()
    assert registry.pid != old_pid
    assert httpx.get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=10).content == data


def test_tls_registry_requires_credentials(tls_registry: RegistryProcess) -> None:
    ca = tls_registry.ssl_context()
    anonymous = httpx.get(f"{tls_registry.url}/v2/", verify=ca, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = httpx.get(f"{tls_registry.url}/v2/", verify=ca, auth=(tls_registry.username, "nope"), timeout=10)
    assert wrong.status_code == 401
    ok = httpx.get(
        f"{tls_registry.url}/v2/", verify=ca, auth=(tls_registry.username, tls_registry.password), timeout=10
    )
    assert ok.status_code == 200


def test_tls_registry_certificate_is_not_publicly_trusted(tls_registry: RegistryProcess) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{tls_registry.url}/v2/", timeout=10)


@pytest.mark.engine
def test_base_image_runs_python_from_the_registry(docker_engine: Engine) -> None:
    client = docker_engine.client
    # Pull by registry reference, as a user's build would; drop the local tag first so the pull is real.
    client.images.remove(docker_engine.base_ref)
    client.images.pull(docker_engine.base_ref)
    output = client.containers.run(
        docker_engine.base_ref,
        ["python3", "-c", "import platform; print(platform.python_version())"],
        network_mode="host",
        remove=True,
    )
    assert re.fullmatch(r"3\.11\.\d+", output.decode().strip())
