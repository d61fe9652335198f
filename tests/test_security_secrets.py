"""Credentials never leak: build, push, inspect, ls, pull, unpack and diff run with --verbose against the
TLS + htpasswd registry, and neither their output nor any file they wrote (store, blobs, unpacked tree)
holds the password; the serving image they built holds no build secret in its config or its file names."""

from __future__ import annotations

import base64
import io
import json
import secrets
import shutil
import tarfile
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.registry_helpers import blob, opener

from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, Manifest, parse
from modelpack.registry import RegistryClient, RegistryRepository
from modelpack.registry.dockerconfig import Credential
from modelpack.registry.parallel import push_blobs
from modelpack.store.layout import LayoutStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _docker_config(directory: Path, host: str, username: str, password: str) -> Path:
    directory.mkdir(parents=True)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


def _file_texts(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


@pytest.mark.engine
@pytest.mark.slow
def test_verbose_commands_and_written_files_hold_no_secret(
    tls_registry: RegistryProcess,
    docker_engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    host, ca = tls_registry.host, str(tls_registry.ca_file)
    password, user = tls_registry.password, tls_registry.username
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    needles = [password, wrong] + [
        base64.b64encode(f"{user}:{p}".encode()).decode() for p in (password, wrong)
    ]
    env = {"DOCKER_CONFIG": str(_docker_config(tmp_path / "docker", host, user, password))}
    bad_env = {"DOCKER_CONFIG": str(_docker_config(tmp_path / "docker-bad", host, user, wrong))}
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "iris-onnx", proj)
    store, pulled, dest = tmp_path / "store", tmp_path / "pulled", tmp_path / "unpacked"
    ref = f"{host}/t/secrets-{secrets.token_hex(3)}"
    tls = ("--ca-file", ca)
    runs: list[tuple[tuple[str, ...], dict[str, str], int]] = [
        (("build", str(proj), "--base", docker_engine.base_ref, "--store", str(store)), env, 0),
        # the base layers come from the plain registry and go to the TLS one: the CA by SSL_CERT_FILE
        (("push", f"{ref}:1.0.0", "--from", "iris-onnx:1.0.0", "--store", str(store)),
         {**env, "SSL_CERT_FILE": ca}, 0),
        (("inspect", f"{ref}:1.0.0", *tls), env, 0),
        (("inspect", f"{ref}:1.0.0", "--json", *tls), env, 0),
        (("ls", ref, *tls), env, 0),
        (("pull", f"{ref}:1.0.0", "--store", str(pulled), *tls), env, 0),
        (("unpack", f"{ref}:1.0.0", str(dest), *tls), env, 0),
        (("diff", f"{ref}:1.0.0", "iris-onnx:1.0.0", "--store", str(store), *tls), env, 0),
        (("inspect", f"{ref}:missing", *tls), env, 1),
        (("ls", ref, *tls), bad_env, 1),  # refused credentials: a traceback under --verbose
        (("push", f"{ref}:1.0.1", "--from", "iris-onnx:1.0.0", "--any-version", "--store", str(store)),
         {**bad_env, "SSL_CERT_FILE": ca}, 1),
    ]  # fmt: skip
    outputs: list[str] = []
    for args, run_env, code in runs:
        result = run_cli("--verbose", *args, env=run_env)
        assert result.returncode == code, f"{args}: {result.stderr[-2000:]}"
        outputs += [result.stdout, result.stderr]
    everything = "\n".join(outputs)
    assert everything.count("Traceback") >= 3  # --verbose was on: each failure printed its traceback
    for needle in needles:
        assert needle not in everything
    written = _file_texts(store) + _file_texts(pulled) + _file_texts(dest)
    assert len(written) > 10
    for data in written:
        for needle in needles:
            assert needle.encode() not in data
    _assert_image_holds_no_secret(LayoutStore(store), [*needles, str(tmp_path / "docker")])


def _assert_image_holds_no_secret(store: LayoutStore, needles: list[str]) -> None:
    index = parse(store.get_manifest("iris-onnx:1.0.0").raw)
    assert isinstance(index, Index)
    image = parse(store.get_manifest(index.manifests[0].digest).raw)
    assert isinstance(image, Manifest)
    config = json.loads(store.read_blob_bytes(image.config.digest))
    env = config["config"].get("Env", [])
    assert not [e for e in env if any(n in e for n in needles) or e.startswith(("DOCKER_", "REGISTRY_"))]
    assert config["config"]["User"] not in ("", "root", "0", "0:0")
    names: list[str] = []
    for layer in image.layers:
        if not store.has_blob(layer.digest):
            continue  # base layers stay in the base image's registry
        assert (
            layer.media_type in (mt.OCI_LAYER_TAR, mt.MODEL_WEIGHT_TAR, mt.MODEL_CODE_TAR) or layer.media_type
        )
        with tarfile.open(fileobj=io.BytesIO(store.read_blob_bytes(layer.digest))) as tf:
            names += tf.getnames()
    assert names, "no layer of ours was read"
    lowered = [n.lower() for n in names]
    assert not [
        n for n in lowered if ".docker/" in n or n.endswith(("config.json.bak", ".netrc", "htpasswd"))
    ]
    assert not [n for n in names if any(needle in n for needle in needles)]


def test_parallel_first_requests_to_a_tls_loopback_registry_all_switch_to_https(
    tls_registry: RegistryProcess, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loopback registry is tried over plain HTTP first (as docker does). When the first requests are
    # parallel blob HEADs (a push), each meets Go's "HTTP request to an HTTPS server" 400, with no body
    # to read on a HEAD: all must switch to HTTPS, verified against the CA from SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    cred = Credential(tls_registry.username, tls_registry.password)
    payloads = [secrets.token_bytes(100 + i) for i in range(8)]
    with RegistryClient(tls_registry.host, credentials=lambda _: cred) as client:
        results = push_blobs(
            RegistryRepository(client, repo), [(blob(p), opener(p)) for p in payloads], workers=8
        )
        assert client.base_url == f"https://{tls_registry.host}"
    assert [r.how for r in results] == ["upload"] * 8


def test_cli_verifies_tls_by_default_and_ca_file_fixes_it(
    tls_registry: RegistryProcess, tmp_path: Path
) -> None:
    host, user, password = tls_registry.host, tls_registry.username, tls_registry.password
    env = {"DOCKER_CONFIG": str(_docker_config(tmp_path / "docker", host, user, password))}
    repo = f"{tls_registry.host}/t/tls-{secrets.token_hex(3)}"
    refused = run_cli("ls", repo, env=env)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: TLS verification of {tls_registry.host} failed: its certificate is signed by an unknown CA "
        "(pass --ca-file with the registry's CA certificate, or --insecure to skip verification)\n"
    )
    trusted = run_cli("ls", repo, "--ca-file", str(tls_registry.ca_file), env=env)
    # past TLS and past auth: the repository simply does not exist yet
    assert trusted.returncode == 1 and "not found" in trusted.stderr, trusted.stderr
    assert "TLS" not in trusted.stderr
