"""modelpack inspect: the same view of a release locally and in a registry, from manifests alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main as run_cli  # in process: the console script is proven in test_cli
from support.release_fixtures import Pushed, pushed  # noqa: F401  (the fixture)

from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index
from modelpack.oci.target import RawManifest
from modelpack.registry.client import RegistryRepository
from modelpack.registry.transport import RegistryClient
from modelpack.release.view import NotAReleaseError, load_release, release_from_manifest


def _json(*args: str) -> Any:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _recording_repo(host: str, repo: str) -> tuple[RegistryRepository, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    hook: Callable[[httpx.Request], None] = seen.append
    client = RegistryClient(host, event_hooks={"request": [hook]})
    return RegistryRepository(client, repo), seen


def test_inspect_remote_equals_local(pushed: Pushed) -> None:  # noqa: F811
    remote = _json("inspect", pushed.ref("1.2.0"))
    local = _json("inspect", "iris-onnx:1.2.0", "--store", str(pushed.store.root))
    assert remote.pop("reference") == pushed.ref("1.2.0")
    assert local.pop("reference") == "iris-onnx:1.2.0"
    assert (remote.pop("readFrom"), local.pop("readFrom")) == ("registry", "store")
    assert remote == local
    assert remote["digest"] == pushed.digests["1.2.0"]
    assert remote["isIndex"] is False
    record = remote["record"]
    assert (record["name"], record["version"]) == ("iris-onnx", "1.2.0")
    assert record["metrics"]["accuracy"] == {"value": 0.93, "dataset": "iris-test-v3"}
    assert record["params"] == {"lr": 0.1, "seed": 42}
    kinds = [layer["kind"] for layer in remote["layers"]]
    assert kinds == ["weights", "code", "docs", "record"]
    weights = remote["layers"][0]
    assert weights["filepath"] == "models/model.onnx"
    assert remote["totalSize"] == (
        remote["bundle"]["size"] + remote["config"]["size"] + sum(x["size"] for x in remote["layers"])
    )


def test_inspect_index_release_names_image_and_bundle(pushed: Pushed) -> None:  # noqa: F811
    view = _json("inspect", pushed.ref("0.1.0", pushed.index_repo))
    assert view["isIndex"] is True
    assert view["digest"] == pushed.digests["index"]
    assert view["mediaType"] == mt.OCI_INDEX
    assert view["image"]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert view["bundle"]["artifactType"] == mt.MODEL_ARTIFACT
    assert view["bundle"]["digest"] != view["digest"]
    assert view["record"]["name"] == "house-prices"
    assert [x["kind"] for x in view["layers"]] == ["weight-config", "code", "record"]
    assert view["annotations"][mt.ANN_VERSION] == "0.1.0"


def test_inspect_prints_record_for_people(pushed: Pushed) -> None:  # noqa: F811
    result = run_cli("inspect", pushed.ref("1.1.0"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("iris-onnx 1.1.0\n")
    for expected in (
        pushed.digests["1.1.0"],
        "LAYERS",
        "models/model.onnx",
        "METRICS",
        "0.95",
        "iris-test",
        "PARAMS",
        "DATASETS",
        "iris-train",
        "code/requirements.lock (requirements, python 3.11)",
        "accuracy >= 0.9",
    ):
        assert expected in out, expected


def test_record_needs_one_manifest_get_and_no_blob(registry: RegistryProcess, pushed: Pushed) -> None:  # noqa: F811
    index_repo, seen = _recording_repo(registry.host, pushed.index_repo)
    view = load_release(index_repo, "0.1.0", layers=False)
    assert view.record.version == "0.1.0" and view.is_index and view.bundle_manifest is None
    assert [(r.method, r.url.path) for r in seen] == [("GET", f"/v2/{pushed.index_repo}/manifests/0.1.0")]
    seen.clear()
    view = load_release(index_repo, "0.1.0")  # the layers need the bundle manifest: one more GET
    assert [r.url.path.rsplit("/", 1)[1] for r in seen] == ["0.1.0", view.bundle.digest]
    assert all("/blobs/" not in r.url.path for r in seen)
    bundle_repo, seen = _recording_repo(registry.host, pushed.repo)
    assert load_release(bundle_repo, "1.0.0").layers  # a bare bundle: its one manifest has everything
    assert len(seen) == 1


def test_foreign_manifests_are_not_releases(pushed: Pushed) -> None:  # noqa: F811
    with pytest.raises(NotAReleaseError, match="not a modelpack release"):
        load_release(pushed.store, "foreign")
    result = run_cli("inspect", pushed.ref("plain-image"))
    assert result.returncode == 1  # malformed registry content is a failure, not a usage error
    assert result.stderr.count("\n") == 1 and "not a modelpack release" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("9.9.9",), 1, "9.9.9"),  # unknown tag
        (("x", "t/no-such-repo"), 1, "no-such-repo"),  # unknown repository
        (("",), 2, "names no release"),  # no tag at all
    ],
)
def test_unknown_tag_or_repo_is_one_line_error(
    pushed: Pushed,  # noqa: F811
    args: tuple[str, ...],
    code: int,
    needle: str,
) -> None:
    if args == ("",):
        ref = f"{pushed.host}/{pushed.repo}"
    elif len(args) == 2:
        ref = f"{pushed.host}/{args[1]}:1.0.0"
    else:
        ref = pushed.ref(args[0])
    result = run_cli("inspect", ref)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_inspect_local_layout_reference(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    view = _json("inspect", f"oci:{pushed.store.root}:iris-onnx:1.3.0")
    assert view["record"]["metrics"]["accuracy"]["value"] == 0.97


def test_index_without_record_annotation_reads_the_bundle_once(pushed: Pushed) -> None:  # noqa: F811
    """An index written by another tool may carry no record: the bundle manifest's annotation serves."""
    store = pushed.store
    bundle_raw = store.get_manifest("house-prices:0.1.0")
    bundle = Descriptor(
        bundle_raw.media_type, bundle_raw.digest, len(bundle_raw.raw), artifact_type=mt.MODEL_ARTIFACT
    )
    plain = Index(manifests=(bundle,))
    fetched: list[str] = []

    def fetch(ref: str) -> RawManifest:
        fetched.append(ref)
        return store.get_manifest(ref)

    raw = RawManifest(plain.to_bytes(), plain.media_type, plain.digest)
    view = release_from_manifest(raw, fetch, layers=False)
    assert fetched == [bundle.digest]
    assert view.record.name == "house-prices" and view.image is None and view.is_index
    no_bundle = Index(manifests=(Descriptor(mt.OCI_MANIFEST, bundle.digest, bundle.size),))
    with pytest.raises(NotAReleaseError, match="no model bundle"):
        release_from_manifest(
            RawManifest(no_bundle.to_bytes(), no_bundle.media_type, no_bundle.digest), fetch, where="x"
        )


def test_inspect_shows_image_size_reports_and_environments(pushed: Pushed) -> None:  # noqa: F811
    from support.places import attach_report

    from modelpack.targets import Targets

    tags = run_cli("ls", f"{pushed.host}/{pushed.index_repo}").stdout.split()
    ref = pushed.ref(tags[0], pushed.index_repo)
    with Targets() as targets:
        target = targets.open(ref).target
        attach_report(target, target.get_manifest(tags[0]))
    moved = run_cli("promote", ref, "qa", env={"MODELPACK_ACTOR": "ci"})
    assert moved.returncode == 0, moved.stderr
    doc = _json("inspect", ref)
    assert doc["environments"] == ["qa"]
    assert [(r["passed"], r["runtime"]) for r in doc["reports"]] == [(True, "unknown")]
    assert doc["imageSize"] and doc["imageSize"] > 0
    text = run_cli("inspect", ref).stdout
    assert "envs       qa" in text and "tested     passed" in text and "image size" in text
