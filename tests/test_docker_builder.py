"""The Docker builder: a Dockerfile rendered from templates/, built by the real engine with its network
off, saved into the store as an OCI image, pushed by modelpack's client and run with its golden cases."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import support.schemacheck as schemacheck

from modelpack import api
from modelpack.errors import BuildError, UsageError
from modelpack.image import docker_builder
from modelpack.image.config import NONROOT
from modelpack.image.export import import_docker_archive
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, Manifest, parse
from modelpack.record.cases import load_cases
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.container import serving_container

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@dataclass(frozen=True)
class Both:
    store: LayoutStore
    docker: api.BuildResult
    daemonless: api.BuildResult
    logs: tuple[str, ...]
    network_modes: tuple[object, ...]


class _Recording:
    """The engine's client, recording the network mode every build asked for (the rest passes through)."""

    def __init__(self, client):  # type: ignore[no-untyped-def]
        self._client = client
        self.network_modes: list[object] = []
        outer = self

        class _Api:
            def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                return getattr(client.api, name)

            def build(self, **kwargs):  # type: ignore[no-untyped-def]
                outer.network_modes.append(kwargs.get("network_mode"))
                return client.api.build(**kwargs)

        self.api = _Api()


@pytest.fixture(scope="module")
def both(docker_engine, tmp_path_factory: pytest.TempPathFactory) -> Both:  # type: ignore[no-untyped-def]
    store = LayoutStore(tmp_path_factory.mktemp("docker-builder-store"))
    proj = tmp_path_factory.mktemp("proj") / "custom-handler"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    logs: list[str] = []
    client = _Recording(docker_engine.client)
    built = api.build(
        Targets(store_path=store.root), proj, image=True, base=docker_engine.base_ref, version="1.0.0",
        environ=EPOCH, builder="docker", docker=client, log=logs.append,
    )  # fmt: skip
    plain = api.build(
        Targets(store_path=store.root),
        proj,
        image=True,
        base=docker_engine.base_ref,
        version="1.0.0-daemonless",
        environ=EPOCH,
    )
    return Both(store, built, plain, tuple(logs), tuple(client.network_modes))


def _manifest(store: LayoutStore, ref: str) -> Manifest:
    raw = store.get_manifest(ref)
    doc = parse(raw.raw, raw.media_type)
    if isinstance(doc, Index):
        doc = parse(store.get_manifest(doc.manifests[0].digest).raw)
    assert isinstance(doc, Manifest)
    return doc


def _kind(store: LayoutStore, digest: str) -> str:
    """What a layer holds, by where its files land: the layer order both builders must share."""
    with tarfile.open(store.blob_path(digest)) as tf:
        files = [m.name.lstrip("./") for m in tf.getmembers() if not m.isdir()]
    for prefix in ("opt/modelpack/deps/", "opt/modelpack/runtime/", "models/", "code/"):
        if files and all(f.startswith(prefix) for f in files):
            return prefix
    if files == ["opt/modelpack/serving.json"]:
        return "serving.json"
    return f"mixed: {sorted(files)[:5]}"


@pytest.mark.engine
@pytest.mark.slow
def test_same_layers_and_run_settings_as_the_daemonless_image(both: Both) -> None:
    assert both.docker.image is not None and both.daemonless.image is not None
    docker_image = _manifest(both.store, both.docker.tag)
    plain_image = _manifest(both.store, both.daemonless.tag)
    schemacheck.validate_manifest(json.loads(docker_image.to_bytes()))
    # the base is referenced (its registry's blobs), not copied into the store, exactly as daemonless
    base = both.daemonless.image.base
    assert docker_image.layers[: len(base.layers)] == base.layers
    assert not both.store.has_blob(base.layers[0].digest)
    ours = docker_image.layers[len(base.layers) :]
    assert [_kind(both.store, d.digest) for d in ours] == [
        _kind(both.store, d.digest) for d in plain_image.layers[len(base.layers) :]
    ]
    # deps and runtime compressed as the daemonless builder compresses them; bundle layers and serving.json
    # stay tars
    assert [d.media_type for d in ours] == [d.media_type for d in plain_image.layers[len(base.layers) :]]
    assert [d.media_type for d in ours[:2]] == [mt.OCI_LAYER_GZIP] * 2
    assert all(d.media_type == mt.OCI_LAYER_TAR for d in ours[2:])

    got = json.loads(both.store.read_blob_bytes(docker_image.config.digest))["config"]
    want = json.loads(both.store.read_blob_bytes(plain_image.config.digest))["config"]
    for key in ("Cmd", "User", "Env", "Healthcheck", "ExposedPorts", "WorkingDir"):
        assert got[key] == want[key], key
    assert got["User"] == NONROOT
    labels = {k: v for k, v in want["Labels"].items() if k != mt.ANN_VERSION}
    assert labels.items() <= got["Labels"].items()
    assert got["Labels"][mt.ANN_VERSION] == "1.0.0"
    # the release index wraps it the same way
    index = parse(both.store.get_manifest(both.docker.tag).raw)
    assert isinstance(index, Index) and str(index.manifests[0].platform) == "linux/amd64"


@pytest.mark.engine
@pytest.mark.slow
def test_build_is_hermetic_and_streams_its_logs(both: Both) -> None:
    # no system packages: the engine ran every step with no network at all, and pip still installed deps
    assert both.network_modes == ("none",)
    assert any("Step 1/" in line for line in both.logs)
    assert any("RUN" in line and "--no-index" in line for line in both.logs)
    assert any(line.startswith("Successfully built") for line in both.logs)


@pytest.mark.engine
@pytest.mark.slow
def test_pushed_docker_image_serves_its_golden_cases(both: Both, registry, repo: str, docker_engine) -> None:  # type: ignore[no-untyped-def]
    dest = f"{registry.host}/{repo}"
    with Targets(store_path=both.store.root) as targets:
        _r = api.push(targets, dest, source=both.docker.tag)
        result, pushed = _r.copy, _r.destination
    assert result.digest == both.docker.digest
    # base layers were mounted or skipped, never uploaded from the store
    assert both.docker.image is not None
    ours = sum(d.size for d in both.docker.image.layers) + both.docker.image.config.size
    assert result.bytes_copied < ours + sum(d.size for d in both.docker.bundle.layers) + 64 * 1024
    cases = load_cases(EXAMPLES / "custom-handler" / "cases.json")
    with serving_container(pushed) as running, httpx.Client() as http:
        for case in cases:
            response = http.post(f"{running.url}/v2/models/house-prices/infer", json=case.request())
            assert response.status_code == 200, response.text
            assert case.compare(response.json()) == (), case.name
        attrs = docker_engine.client.containers.get(running.container_id).attrs
        assert attrs["Config"]["User"] == NONROOT
        assert attrs["Config"]["Cmd"] == ["python3", "-m", "modelpack.serve"]


def test_dockerfile_quotes_values_docker_would_expand() -> None:
    assert docker_builder._dq('a "b" $HOME \\x') == '"a \\"b\\" \\$HOME \\\\x"'
    with pytest.raises(BuildError, match="line break"):
        docker_builder._dq("two\nlines")


def test_select_wheels_keeps_only_the_pinned_versions(tmp_path: Path) -> None:
    for name in (
        "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",
        "numpy-2.4.5-cp311-cp311-manylinux_2_28_x86_64.whl",
        "Orjson-3.10.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "not-a-wheel.whl",
    ):
        (tmp_path / name).write_bytes(b"")
    picked = docker_builder.select_wheels(tmp_path, {"numpy": "2.4.6", "orjson": "3.10.0"})
    assert [p.name for p in picked] == [
        "Orjson-3.10.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",
    ]


def _archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def test_docker_archive_import_checks_diff_ids_and_follows_layer_links(tmp_path: Path) -> None:
    import hashlib

    layer = _archive({"models/w.bin": b"weights"})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": [diff_id] * 2}})
    manifest = json.dumps([{"Config": "c.json", "Layers": ["a/layer.tar", "b/layer.tar"]}])
    saved = _archive(
        {"a/layer.tar": layer, "c.json": config.encode(), "manifest.json": manifest.encode()},
        links={"b/layer.tar": "../a/layer.tar"},
    )
    store = LayoutStore(tmp_path / "store")
    chunks = [saved[i : i + 1000] for i in range(0, len(saved), 1000)]
    out = import_docker_archive(chunks, store)
    assert [d.digest for d in out.layers] == [diff_id, diff_id]
    assert store.read_blob_bytes(diff_id) == layer
    assert (
        out.config.media_type == mt.OCI_CONFIG and store.read_blob_bytes(out.config.digest) == config.encode()
    )

    bad = json.dumps({"rootfs": {"diff_ids": ["sha256:" + "0" * 64] * 2}})
    tampered = _archive({"a/layer.tar": layer, "c.json": bad.encode(), "manifest.json": manifest.encode()},
                        links={"b/layer.tar": "../a/layer.tar"})  # fmt: skip
    with pytest.raises(BuildError, match="saved layer 0"):
        import_docker_archive([tampered], LayoutStore(tmp_path / "other"))


def test_system_packages_need_the_docker_builder(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    text = (proj / "modelpack.yaml").read_text()
    (proj / "modelpack.yaml").write_text(text + "\nserving:\n  builder: docker\n  system_packages: [curl]\n")
    with pytest.raises(UsageError, match="needs the Docker builder"):
        api.build(Targets(store_path=tmp_path / "s"), proj, image=True, builder="daemonless", environ=EPOCH)
    with pytest.raises(UsageError, match="unknown builder"):
        api.build(Targets(store_path=tmp_path / "s"), proj, image=True, builder="kaniko", environ=EPOCH)
    # the bundle alone needs no image builder at all
    bundle_only = api.build(
        Targets(store_path=tmp_path / "b"), proj, image=False, builder="daemonless", environ=EPOCH
    )
    assert bundle_only.image is None and bundle_only.index is None


def test_system_packages_come_first_and_every_stage_sees_them() -> None:
    layers = [docker_builder.ContextLayer(f"layers/{i}.tar", f"layer {i}") for i in (1, 2)]
    text = docker_builder.render_dockerfile(
        {
            "name": "n", "version": "1", "modelpack_version": "0", "base": "r/b@sha256:" + "a" * 64,
            "system_packages": ["libgomp1", "curl"], "pip_wheel": "pip-1-py3-none-any.whl",
            "deps_dir": "/opt/modelpack/deps", "runtime_dir": "/opt/modelpack/runtime",
            "serving_config": "/opt/modelpack/serving.json", "layers": layers,
            "env": [("A", docker_builder._dq("x$y"))], "labels": [], "port": 8080, "workdir": "/",
            "user": NONROOT, "cmd": ["python3"],
            "healthcheck": {"test": ["true"], "interval": "1s", "timeout": "1s", "start_period": "1s",
                            "retries": 1},
        }
    )  # fmt: skip
    steps = [line.split()[0] for line in text.splitlines() if line and not line.startswith(("#", " "))]
    assert steps == [
        "FROM", "RUN", "FROM", "COPY", "RUN", "RUN", "FROM", "COPY", "COPY", "ADD", "ADD", "COPY",
        "ENV", "EXPOSE", "WORKDIR", "USER", "HEALTHCHECK", "CMD",
    ]  # fmt: skip
    assert "apt-get install -y --no-install-recommends libgomp1 curl" in text
    assert "FROM system AS deps" in text and 'ENV A="x\\$y"' in text
    assert text.index("ADD layers/1.tar /") < text.index("ADD layers/2.tar /")


def test_cli_builder_flag_reaches_the_build(tmp_path: Path) -> None:
    from support.clirun import run_cli

    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    out = run_cli("build", str(proj), "--builder", "kaniko", "--store", str(tmp_path / "store"))
    assert out.returncode == 2, out.stderr
    assert "unknown builder 'kaniko'" in out.stderr and "daemonless, docker" in out.stderr


def test_a_pin_with_no_wheel_is_fetched_as_source_with_pinned_build_tools(tmp_path: Path) -> None:
    import subprocess

    calls: list[list[str]] = []

    def pip(args):  # type: ignore[no-untyped-def]
        calls.append(list(args))
        req = (tmp_path / "requirements.txt").read_text() if args[0] == "download" and "-r" in args else ""
        if "antlr4-python3-runtime==4.9.3" in req:
            err = "ERROR: No matching distribution found for antlr4-python3-runtime==4.9.3\n"
            return subprocess.CompletedProcess(args, 1, "", err)
        return subprocess.CompletedProcess(args, 0, "", "")

    binary, sources = docker_builder.fetch_distributions(
        {"numpy": "2.4.6", "antlr4-python3-runtime": "4.9.3"},
        tmp_path,
        docker_builder.wheels.TargetPlatform(),
        pip,
    )
    assert sources == {"antlr4-python3-runtime": "4.9.3"}
    assert binary == {"numpy": "2.4.6", **docker_builder.BUILD_TOOLS}
    assert calls[-1][:4] == ["download", "--no-deps", "--no-binary", ":all:"]
    assert calls[-1][-1] == "antlr4-python3-runtime==4.9.3"


@pytest.mark.engine
@pytest.mark.slow
def test_the_docker_builder_builds_what_has_no_wheel_offline(docker_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the daemonless builder refuses this lock (tests/test_image.py) and suggests --builder docker
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    (proj / "requirements.lock").write_text("numpy==2.4.6\nantlr4-python3-runtime==4.9.3\n")
    store = LayoutStore(tmp_path / "store")
    modes: list[object] = []
    client = _Recording(docker_engine.client)
    built = api.build(
        Targets(store_path=store.root), proj, image=True, base=docker_engine.base_ref, version="1.0.0",
        environ=EPOCH, builder="docker", docker=client,
    )  # fmt: skip
    modes.extend(client.network_modes)
    assert modes == ["none"]  # built from source inside the engine, with no network
    assert built.image is not None
    deps = built.image.layers[0]
    with tarfile.open(store.blob_path(deps.digest)) as tf:
        names = tf.getnames()
    assert any(n.startswith("opt/modelpack/deps/antlr4/") for n in names)
    assert any(n.startswith("opt/modelpack/deps/numpy/") for n in names)


@pytest.mark.engine
@pytest.mark.slow
def test_system_packages_are_the_layer_after_the_base(docker_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    text = (proj / "modelpack.yaml").read_text()
    (proj / "modelpack.yaml").write_text(text + "\nserving:\n  builder: docker\n  system_packages: [tini]\n")
    store = LayoutStore(tmp_path / "store")
    client = _Recording(docker_engine.client)
    # apt-get is the one step that needs a network; the test engine has no bridge, so it gets the host's
    environ = {**EPOCH, "MODELPACK_DOCKER_NETWORK": "host"}  # api._build.DOCKER_NETWORK_ENV
    built = api.build(
        Targets(store_path=store.root),
        proj,
        image=True,
        base=docker_engine.base_ref,
        version="1.0.0",
        environ=environ,
        docker=client,
    )
    assert client.network_modes == ["host"]
    assert built.image is not None
    system, deps = built.image.layers[0], built.image.layers[1]
    with tarfile.open(store.blob_path(system.digest)) as tf:
        assert "usr/bin/tini" in tf.getnames()
    assert _kind(store, deps.digest) == "opt/modelpack/deps/"
    assert [_kind(store, d.digest) for d in built.image.layers[2:]] == [
        "opt/modelpack/runtime/", "models/", "code/", "serving.json",
    ]  # fmt: skip
