"""modelpack copy, tag, login/logout and gc through the console script, against real registries."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli as run_process
from support.clirun import run_main as run_cli  # in process: the console script is proven in test_cli
from support.release_fixtures import EXAMPLES, build, index_release, push

from modelpack.evidence.evidence import attach, read_payload
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, Manifest, parse
from modelpack.oci.target import Target
from modelpack.registry.client import RegistryRepository
from modelpack.registry.dockerconfig import DockerConfig
from modelpack.registry.transport import RegistryClient
from modelpack.store.layout import LayoutStore

REPORT_TYPE = "application/vnd.modelpack.test-report.v1+json"


@dataclass(frozen=True)
class Release:
    host: str
    repo: str
    tag: str
    digest: str
    store: LayoutStore  # where it was built

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"


@pytest.fixture(scope="module")
def release(registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """A real release (an index over an image manifest and the multi-layer bundle) in the registry."""
    store = LayoutStore(tmp_path_factory.mktemp("cli-registry") / "store")
    bundle = build(EXAMPLES / "iris-onnx", store, "1.0.0")
    index_release(store, bundle, "iris-onnx:1.0.0")
    repo = f"t/cli-registry-{secrets.token_hex(3)}"
    digest = push(store, "iris-onnx:1.0.0", f"{registry.host}/{repo}:1.0.0")
    return Release(registry.host, repo, "1.0.0", digest, store)


def _ok(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = run_cli(*args, env=env, stdin=stdin)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def _graph(target: Target, ref: str) -> dict[str, Any]:
    """Every manifest digest and blob digest the graph under `ref` names (as the destination holds it)."""
    root = target.get_manifest(ref)
    manifests, blobs = [root.digest], []
    stack = [parse(root.raw, root.media_type)]
    while stack:
        doc = stack.pop()
        if isinstance(doc, Index):
            for d in doc.manifests:
                child = target.get_manifest(d.digest)
                assert child.digest == d.digest
                manifests.append(d.digest)
                stack.append(parse(child.raw, child.media_type))
        elif isinstance(doc, Manifest):
            for b in (doc.config, *doc.layers):
                assert target.has_blob(b.digest), b.digest
                blobs.append(b.digest)
    return {"manifests": sorted(manifests), "blobs": sorted(set(blobs))}


def _repo(host: str, name: str) -> tuple[RegistryClient, RegistryRepository]:
    client = RegistryClient(host, credentials=lambda _: None)
    return client, RegistryRepository(client, name)


def _skopeo_raw(ref: str, *extra: str) -> bytes:
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", *extra, f"docker://{ref}"], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


# -- copy ---------------------------------------------------------------------------------------------


def test_copy_registry_to_layout_to_registry_keeps_every_digest(release: Release, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    out = _ok("copy", release.ref, f"oci:{layout}")  # no tag: the source's
    assert out.strip() == release.digest
    local = LayoutStore(layout)
    assert local.list_tags() == ["1.0.0"]
    _, src_repo = _repo(release.host, release.repo)
    source_graph = _graph(src_repo, release.tag)
    assert len(source_graph["manifests"]) == 3 and len(source_graph["blobs"]) >= 4  # index, image, bundle
    assert _graph(local, "1.0.0") == source_graph

    back = f"{release.repo}-back"
    first = json.loads(_ok("copy", f"oci:{layout}:1.0.0", f"{release.host}/{back}:copied", "--json"))
    assert first["digest"] == release.digest
    # the image shares the bundle's layers: each unique blob is sent once, its second use skipped
    assert first["blobsCopied"] == len(source_graph["blobs"])
    assert first["bytesCopied"] > 0 and first["manifests"] == 2
    with _repo(release.host, back)[0] as client:
        assert _graph(RegistryRepository(client, back), "copied") == source_graph
    assert _skopeo_raw(f"{release.host}/{back}:copied", "--tls-verify=false") == _skopeo_raw(
        release.ref, "--tls-verify=false"
    )
    again = json.loads(_ok("copy", f"oci:{layout}:1.0.0", f"{release.host}/{back}:copied", "--json"))
    assert again["blobsCopied"] == 0
    assert again["blobsSkipped"] == first["blobsCopied"] + first["blobsSkipped"]


def test_copy_registry_to_registry_mounts_and_tells_the_summary(release: Release) -> None:
    dest = f"{release.host}/{release.repo}-mirror:1.0.0"
    result = run_cli("copy", release.ref, dest)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == release.digest
    assert f"copied {release.ref} to {dest}" in result.stderr
    assert "0 blobs copied (0 bytes)" in result.stderr  # every blob mounted within the registry


def test_copy_errors_name_the_problem(release: Release, tmp_path: Path) -> None:
    missing = run_cli("copy", f"{release.host}/{release.repo}:9.9.9", f"oci:{tmp_path / 'x'}")
    assert missing.returncode == 1 and "9.9.9" in missing.stderr and "not found" in missing.stderr
    assert not (tmp_path / "x" / "index.json").exists()
    untagged = run_cli("copy", f"{release.host}/{release.repo}", f"oci:{tmp_path / 'y'}")
    assert untagged.returncode == 2 and "names no release" in untagged.stderr
    by_digest = run_cli("copy", f"{release.host}/{release.repo}@{release.digest}", f"oci:{tmp_path / 'z'}")
    assert by_digest.returncode == 2 and "needs a tag" in by_digest.stderr


def test_copy_with_referrers_carries_an_attached_referrer(release: Release, tmp_path: Path) -> None:
    subject_repo = f"{release.repo}-ref"
    _ok("copy", release.ref, f"{release.host}/{subject_repo}:1.0.0")
    payload = json.dumps({"passed": 3, "failed": 0}).encode()
    with _repo(release.host, subject_repo)[0] as client:
        source = RegistryRepository(client, subject_repo)
        subject = source.resolve("1.0.0")
        report = attach(source, subject, REPORT_TYPE, payload, "application/json", {"dev.modelpack.x": "y"})

    layout = tmp_path / "with-referrers"
    copied = json.loads(
        _ok("copy", f"{release.host}/{subject_repo}:1.0.0", f"oci:{layout}", "--referrers", "--json")
    )
    assert copied["referrers"] == 1
    local = LayoutStore(layout)
    assert [d.digest for d in local.referrers(release.digest)] == [report.digest]
    assert read_payload(local, report) == payload

    again = f"{release.repo}-ref-dest"
    _ok("copy", f"oci:{layout}:1.0.0", f"{release.host}/{again}:1.0.0", "--referrers")
    plain = f"{release.repo}-ref-plain"
    _ok("copy", f"oci:{layout}:1.0.0", f"{release.host}/{plain}:1.0.0")
    with _repo(release.host, again)[0] as client:
        dest = RegistryRepository(client, again)
        listed = dest.referrers(release.digest)
        assert [d.digest for d in listed] == [report.digest]
        assert listed[0].artifact_type == REPORT_TYPE
        assert read_payload(dest, listed[0]) == payload
        assert RegistryRepository(client, plain).referrers(release.digest) == []


# -- tag ----------------------------------------------------------------------------------------------


def test_tag_keeps_the_manifest_byte_identical(release: Release) -> None:
    out = _ok("tag", release.ref, "prod")
    assert out.strip() == release.digest
    original = _skopeo_raw(release.ref, "--tls-verify=false")
    tagged = _skopeo_raw(f"{release.host}/{release.repo}:prod", "--tls-verify=false")
    assert tagged == original
    assert "sha256:" + hashlib.sha256(tagged).hexdigest() == release.digest
    as_json = json.loads(_ok("tag", release.ref, "stable", "--json"))
    assert as_json == {
        "reference": f"{release.host}/{release.repo}:stable",
        "digest": release.digest,
        "mediaType": mt.OCI_INDEX,
    }


def test_tag_in_a_layout_and_the_local_store(release: Release, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    _ok("copy", release.ref, f"oci:{layout}")
    assert _ok("tag", f"oci:{layout}:1.0.0", "prod").strip() == release.digest
    store = LayoutStore(layout)
    assert store.get_manifest("prod").raw == store.get_manifest("1.0.0").raw
    # the local store's tags are NAME:VERSION: a bare NEWTAG keeps the name
    local = tmp_path / "store"
    _ok("copy", release.ref, f"oci:{local}:iris-onnx:1.0.0")
    assert _ok("tag", "iris-onnx:1.0.0", "latest", "--store", str(local)).strip() == release.digest
    assert "iris-onnx:latest" in LayoutStore(local).list_tags()


def test_tag_errors(release: Release) -> None:
    other_repo = run_cli("tag", release.ref, f"{release.host}/elsewhere:1")
    assert other_repo.returncode == 2 and "modelpack copy" in other_repo.stderr
    bad = run_cli("tag", release.ref, "-bad")
    assert bad.returncode != 0
    bad = run_cli("tag", release.ref, "bad tag!")
    assert bad.returncode == 2 and "malformed" in bad.stderr
    missing = run_cli("tag", f"{release.host}/{release.repo}:nope", "prod2")
    assert missing.returncode == 1 and "not found" in missing.stderr


# -- login / logout -----------------------------------------------------------------------------------


def _cert_dir(tls_registry: RegistryProcess, tmp_path: Path) -> Path:
    d = tmp_path / "certs"
    d.mkdir(exist_ok=True)
    shutil.copy(tls_registry.ca_file, d / "ca.crt")
    return d


def _seed_tls(release: Release, tls_registry: RegistryProcess, tmp_path: Path, env: dict[str, str]) -> str:
    """The release in the TLS registry, copied there by the CLI through a layout (a --ca-file applies to
    every registry of a command, so the plain registry cannot be the source in the same command)."""
    layout = tmp_path / "seed"
    _ok("copy", release.ref, f"oci:{layout}")
    repo = f"t/cli-login-{secrets.token_hex(3)}"
    ca = str(tls_registry.ca_file)
    _ok("copy", f"oci:{layout}:1.0.0", f"{tls_registry.host}/{repo}:1.0.0", "--ca-file", ca, env=env)
    return repo


@pytest.mark.slow  # a dozen console-script runs
def test_login_writes_a_config_docker_tools_and_ls_use(
    release: Release, tls_registry: RegistryProcess, tmp_path: Path
) -> None:
    config_dir = tmp_path / "docker"
    env = {"DOCKER_CONFIG": str(config_dir)}
    ca = str(tls_registry.ca_file)
    host, password = tls_registry.host, tls_registry.password
    result = run_cli(
        "login", host, "-u", tls_registry.username, "--password-stdin", "--ca-file", ca,
        env=env, stdin=password + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Login succeeded\n"
    config_path = config_dir / "config.json"
    text = config_path.read_text()
    assert password not in text
    entry = json.loads(text)["auths"][host]
    assert base64.b64decode(entry["auth"]).decode() == f"{tls_registry.username}:{password}"
    assert oct(config_path.stat().st_mode & 0o777) == "0o600"

    repo = _seed_tls(release, tls_registry, tmp_path, env)
    raw = _skopeo_raw(
        f"{host}/{repo}:1.0.0",
        "--authfile",
        str(config_path),
        "--cert-dir",
        str(_cert_dir(tls_registry, tmp_path)),
    )
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == release.digest
    assert _ok("ls", f"{host}/{repo}", "--ca-file", ca, env=env).split() == ["1.0.0"]

    stranger = run_cli("ls", f"{host}/{repo}", "--ca-file", ca, env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert stranger.returncode == 1 and f"modelpack login {host}" in stranger.stderr

    out = _ok("logout", host, env=env)
    assert host in out
    assert host not in json.loads(config_path.read_text())["auths"]
    after = run_cli("ls", f"{host}/{repo}", "--ca-file", ca, env=env)
    assert after.returncode == 1 and "modelpack login" in after.stderr
    assert run_cli("logout", host, env=env).returncode == 0  # nothing left to remove is no error


def test_wrong_password_exits_1_names_the_registry_and_leaks_nothing(
    tls_registry: RegistryProcess, tmp_path: Path
) -> None:
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"auths": {}, "psFormat": "table"}))
    wrong = "wrong-" + secrets.token_urlsafe(12)
    for verbose in ((), ("--verbose",)):
        result = run_cli(
            *verbose, "login", tls_registry.host, "-u", tls_registry.username, "--password-stdin",
            "--ca-file", str(tls_registry.ca_file),
            env={"DOCKER_CONFIG": str(config_dir)}, stdin=wrong,
        )  # fmt: skip
        assert result.returncode == 1
        assert f"{tls_registry.host} refused the credentials" in result.stderr
        for text in (result.stdout, result.stderr, (config_dir / "config.json").read_text()):
            assert wrong not in text and tls_registry.password not in text
    assert json.loads((config_dir / "config.json").read_text()) == {"auths": {}, "psFormat": "table"}


def test_login_needs_a_password_source(tls_registry: RegistryProcess, tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    none = run_cli("login", tls_registry.host, "-u", "x", env=env)
    assert none.returncode == 2 and "--password-stdin" in none.stderr
    both = run_cli("login", tls_registry.host, "-u", "x", "-p", "y", "--password-stdin", env=env, stdin="y")
    assert both.returncode == 2
    assert not (tmp_path / "config.json").exists()


def test_logout_erases_through_the_credential_helper(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"credsStore": "pass", "auths": {"reg.test": {}, "other.test": {"auth": "eDp5"}}})
    )
    calls: list[tuple[Sequence[str], bytes]] = []

    def runner(argv: Sequence[str], stdin: bytes) -> tuple[int, bytes, bytes]:
        calls.append((argv, stdin))
        return (0, b"", b"") if len(calls) == 1 else (1, b"", b"credentials not found in native keychain")

    config = DockerConfig.load(tmp_path)
    assert config.remove("reg.test", runner) is True
    assert calls == [(["docker-credential-pass", "erase"], b"reg.test")]
    assert json.loads((tmp_path / "config.json").read_text())["auths"] == {"other.test": {"auth": "eDp5"}}
    assert DockerConfig.load(tmp_path).remove("reg.test", runner) is False


@pytest.mark.slow  # a dozen console-script runs
def test_no_command_shows_the_password_even_with_verbose(
    release: Release, tls_registry: RegistryProcess, tmp_path: Path
) -> None:
    config_dir = tmp_path / "docker"
    env = {"DOCKER_CONFIG": str(config_dir)}
    host, password, ca = tls_registry.host, tls_registry.password, str(tls_registry.ca_file)
    layout = tmp_path / "layout"
    _ok("copy", release.ref, f"oci:{layout}")
    repo = f"t/cli-verbose-{secrets.token_hex(3)}"
    store = tmp_path / "store"
    runs: list[tuple[tuple[str, ...], str | None, int]] = [
        (("login", host, "-u", tls_registry.username, "--password-stdin", "--ca-file", ca), password, 0),
        (("login", host, "-u", tls_registry.username, "--password", password, "--ca-file", ca), None, 0),
        (("copy", f"oci:{layout}:1.0.0", f"{host}/{repo}:1.0.0", "--ca-file", ca, "--referrers"), None, 0),
        (
            ("copy", f"{host}/{repo}:1.0.0", f"oci:{store}:iris-onnx:1.0.0", "--ca-file", ca, "--json"),
            None,
            0,
        ),
        (("tag", f"{host}/{repo}:1.0.0", "prod", "--ca-file", ca), None, 0),
        (("ls", f"{host}/{repo}", "--ca-file", ca), None, 0),
        (("ls", f"{host}/{repo}", "--ca-file", ca, "--json"), None, 0),
        (("inspect", f"{host}/{repo}:prod", "--ca-file", ca), None, 0),
        (("copy", f"{host}/{repo}:missing", f"oci:{store}:x", "--ca-file", ca), None, 1),
        (("gc", "--store", str(store), "--json"), None, 0),
        (("logout", host), None, 0),
        (("ls", f"{host}/{repo}", "--ca-file", ca), None, 1),  # logged out: refused, with a traceback
        (("login", host, "-u", tls_registry.username, "--password-stdin", "--ca-file", ca), "nope", 1),
    ]
    outputs: list[str] = []
    for args, stdin, code in runs:
        result = run_process("--verbose", *args, env=env, stdin=stdin)
        assert result.returncode == code, f"{args}: {result.stderr}"
        outputs += [result.stdout, result.stderr]
        if os.path.exists(config_dir / "config.json"):
            outputs.append((config_dir / "config.json").read_text())
    everything = "\n".join(outputs)
    assert "debug: GET https://" in everything  # verbose did show the requests
    assert "Traceback" in everything  # and the tracebacks of the failures
    assert "WARNING: --password puts the password in your shell history" in everything
    assert password not in everything


# -- gc -----------------------------------------------------------------------------------------------


def test_gc_removes_unreferenced_blobs_and_keeps_referenced_ones(release: Release, tmp_path: Path) -> None:
    root = tmp_path / "store"
    _ok("copy", release.ref, f"oci:{root}:iris-onnx:1.0.0")
    store = LayoutStore(root)
    graph = _graph(store, "iris-onnx:1.0.0")
    old = store.put_blob_bytes(b"orphan " + secrets.token_bytes(4000))
    young = store.put_blob_bytes(b"just written " + secrets.token_bytes(100))
    two_hours_ago = time.time() - 7200
    os.utime(store.blob_path(old.digest), (two_hours_ago, two_hours_ago))

    result = json.loads(_ok("gc", "--store", str(root), "--json"))
    assert result["removedBlobs"] == 1 and result["freedBytes"] == old.size
    assert result["keptYoung"] == 1
    assert not store.has_blob(old.digest) and store.has_blob(young.digest)
    assert _graph(store, "iris-onnx:1.0.0") == graph  # every referenced manifest and blob is still there

    human = run_cli("gc", "--store", str(root), "--grace", "0")
    assert human.returncode == 0
    assert human.stdout == f"removed 1 blob, freed {young.size:,} bytes\n"
    assert not store.has_blob(young.digest)
    assert _graph(store, "iris-onnx:1.0.0") == graph
    assert run_cli("gc", "--store", str(root), "--grace", "-1").returncode == 2


def test_gc_prunes_caches_no_release_needs(tmp_path: Path) -> None:
    from support.release_fixtures import ENV, EXAMPLES

    store = tmp_path / "store"
    env = {"MODELPACK_STORE": str(store), **ENV}
    built = run_cli("build", str(EXAMPLES / "iris-onnx"), "--no-image", env=env)
    assert built.returncode == 0, built.stderr
    kept_hex = built.stdout.strip().split(":", 1)[1]
    cache = store / "cache"
    kept = cache / "releases" / kept_hex
    stale = [cache / "releases" / ("0" * 64), cache / "layers" / ("1" * 64), cache / "deps" / "nolayer"]
    for folder in [kept, *stale]:
        folder.mkdir(parents=True)
        (folder / "f.bin").write_bytes(b"x" * 1000)
    result = json.loads(run_cli("gc", "--grace", "0", "--json", env=env).stdout)
    assert result["removedCaches"] == 3 and result["cacheFreedBytes"] == 3000
    assert kept.is_dir() and not any(p.exists() for p in stale)
    assert (cache / "stat.sqlite").is_file()  # the stat cache is not a cache gc drops
