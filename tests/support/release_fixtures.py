"""Releases for the inspect/diff/ls/pull/unpack tests: the examples built with varied versions and metrics,
pushed to the session registry (real builds, real pushes; nothing here is mocked)."""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fixtures.registry import RegistryProcess

from modelpack import api
from modelpack.bundle.build import BundleResult
from modelpack.oci import mediatypes as mt
from modelpack.oci.copy import copy_graph
from modelpack.oci.model import Descriptor, Manifest, Platform
from modelpack.registry.client import RegistryRepository
from modelpack.release.index import release_index
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV = {"SOURCE_DATE_EPOCH": "1700000000"}


def variant(
    tmp: Path,
    example: str,
    *,
    metrics: dict[str, float] | None = None,
    metrics_dataset: str | None = None,
    model_extra: bytes = b"",
    params: dict[str, object] | None = None,
    history: str | None = None,
    dataset_ref: str | None = None,
) -> Path:
    """A copy of an example with its metrics (and optionally the dataset they were measured on, the model
    bytes, the params, a training history as CSV text, a published dataset's `ref:`) changed, as a retraining
    would."""
    dest = tmp / f"{example}-{secrets.token_hex(3)}"
    shutil.copytree(EXAMPLES / example, dest)
    if metrics is not None:
        # over the example's own metrics: its gates name f1_macro, and a gate on a metric the release
        # does not record is refused at build
        kept = json.loads((dest / "metrics.json").read_text())
        (dest / "metrics.json").write_text(json.dumps({**kept, **metrics}))
    if model_extra:
        with open(dest / "model.onnx", "ab") as f:
            f.write(model_extra)
    packfile = dest / "modelpack.yaml"
    doc = yaml.safe_load(packfile.read_text())
    if metrics_dataset is not None:
        # A new dataset version: the same file under a new name, and the metrics measured on it.
        doc["datasets"].append({"name": metrics_dataset, "path": "data/iris-test.csv", "package": False})
        doc["metrics"]["dataset"] = metrics_dataset
    if params is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params))
    if dataset_ref is not None:
        doc["datasets"].append({"name": "iris-published", "ref": dataset_ref})
    if history is not None:
        (dest / "logs").mkdir(exist_ok=True)
        (dest / "logs" / "train.csv").write_text(history)
        doc["metrics"]["history"] = "logs/train.csv"
    packfile.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def build(project: Path, store: LayoutStore, version: str) -> BundleResult:
    return api.build(Targets(store_path=store.root), project, version=version, environ=ENV).bundle


def push(store: LayoutStore, local_tag: str, dest: str) -> str:
    """copy_graph a local release to `dest` (HOST/REPO:TAG); returns its digest."""
    with Targets(store_path=store.root, environ={}) as targets:
        resolved = targets.open(dest, local=False)
        assert resolved.ref is not None
        return copy_graph(store, resolved.target, local_tag, resolved.ref).digest


def index_release(store: LayoutStore, bundle: BundleResult, tag: str) -> Descriptor:
    """The release as the lead's `build --image` shapes it: an index over a linux/amd64 image and the
    bundle. The image here is minimal (the bundle's own layers as image layers), enough to be told apart."""
    layers = tuple(Descriptor(mt.OCI_LAYER_TAR, d.digest, d.size) for d in bundle.layers)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
    }
    config_desc = store.put_blob_bytes(json.dumps(config).encode(), mt.OCI_CONFIG)
    image = store.put_document(Manifest(config=config_desc, layers=layers))
    image_entry = Descriptor(
        image.media_type, image.digest, image.size, platform=Platform(architecture="amd64", os="linux")
    )
    index = release_index(image_entry, bundle.manifest, bundle.record)
    return store.put_document(index, tag=tag)


@dataclass(frozen=True)
class Pushed:
    host: str
    repo: str  # iris-onnx versions, an alias tag and foreign tags
    index_repo: str  # custom-handler as an index release
    store: LayoutStore  # where they were built
    sources: dict[str, Path]  # version -> project dir it was built from
    digests: dict[str, str]  # version -> digest in the registry

    def ref(self, tag: str, repo: str | None = None) -> str:
        return f"{self.host}/{repo or self.repo}:{tag}"

    def repository(self, targets: Targets, repo: str | None = None) -> RegistryRepository:
        resolved = targets.open(f"{self.host}/{repo or self.repo}", local=False)
        assert isinstance(resolved.target, RegistryRepository)
        return resolved.target


# iris-onnx versions: accuracy by version, and which ones measure on the v3 dataset.
ACCURACY = {"1.0.0": 0.90, "1.1.0": 0.95, "1.2.0": 0.93, "1.3.0": 0.97}
ON_V3 = {"1.2.0", "1.3.0"}
LR = {"1.0.0": 0.1, "1.1.0": 0.01, "1.2.0": 0.1, "1.3.0": 0.01}


def push_all(tmp: Path, host: str) -> Pushed:
    store = LayoutStore(tmp / "store")
    repo = f"t/releases-{secrets.token_hex(3)}"
    index_repo = f"t/index-{secrets.token_hex(3)}"
    sources: dict[str, Path] = {}
    digests: dict[str, str] = {}
    for i, (version, acc) in enumerate(ACCURACY.items()):
        project = variant(
            tmp,
            "iris-onnx",
            metrics={"accuracy": acc, "f1_macro": acc - 0.01},
            metrics_dataset="iris-test-v3" if version in ON_V3 else None,
            model_extra=b"\0" * i,  # every version's model file differs
            params={"lr": LR[version], "seed": 42},
        )
        result = build(project, store, version)
        sources[version] = project
        digests[version] = push(store, result.tag, f"{host}/{repo}:{version}")
    push(store, "iris-onnx:1.0.0", f"{host}/{repo}:prod")  # an env tag: an alias of 1.0.0
    # Not releases: a referrers fallback tag and a plain image. ls must skip them.
    foreign = store.put_document(
        Manifest(config=store.put_blob_bytes(b"{}", mt.OCI_CONFIG), layers=()), tag="foreign"
    )
    push(store, "foreign", f"{host}/{repo}:plain-image")
    push(store, "foreign", f"{host}/{repo}:sha256-{foreign.digest.split(':')[1]}")
    handler = build(EXAMPLES / "custom-handler", store, "0.1.0")
    index_release(store, handler, "house-prices:0.1.0-index")
    digests["index"] = push(store, "house-prices:0.1.0-index", f"{host}/{index_repo}:0.1.0")
    sources["index"] = EXAMPLES / "custom-handler"
    return Pushed(host, repo, index_repo, store, sources, digests)


_PUSHED: dict[str, Pushed] = {}


@pytest.fixture
def pushed(registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    """Import into a test module to use. Built and pushed once per registry: every module importing it
    shares the releases (tests only read them)."""
    if registry.host not in _PUSHED:
        _PUSHED[registry.host] = push_all(tmp_path_factory.mktemp("releases"), registry.host)
    return _PUSHED[registry.host]
