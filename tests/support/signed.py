"""Releases to sign and the independent verifiers that check them: `model_signing` (PyPI, the OpenSSF
model signing reference) and `@sigstore/verify` (npm, tests/verifiers/verify-release.js)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelpack.evidence.evidence import read_payload
from modelpack.oci import mediatypes as mt
from modelpack.oci.target import Target
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from support.release_fixtures import EXAMPLES, build, index_release, push

VERIFIERS = Path(__file__).resolve().parents[1] / "verifiers"


@dataclass(frozen=True)
class Built:
    store: LayoutStore
    bundle_tag: str  # a bundle-only release (iris-onnx)
    index_tag: str  # an index release: image + bundle (custom-handler)


_BUILT: dict[str, Built] = {}


def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Built once per session into a store; each test pushes copies into a fresh repository."""
    if "b" not in _BUILT:
        store = LayoutStore(tmp_path_factory.mktemp("signing") / "store")
        iris = build(EXAMPLES / "iris-onnx", store, "1.0.0")
        handler = build(EXAMPLES / "custom-handler", store, "0.1.0")
        index_release(store, handler, "house-prices:0.1.0-index")
        _BUILT["b"] = Built(store, iris.tag, "house-prices:0.1.0-index")
    return _BUILT["b"]


def pushed_copy(b: Built, host: str, tag: str) -> tuple[str, str]:
    """Pushes the release `tag` of the store to a fresh repository: (reference, digest)."""
    ref = f"{host}/t/signed-{secrets.token_hex(4)}:1.0.0"
    return ref, push(b.store, tag, ref)


def release_signature_bytes(target: Target, digest: str) -> bytes:
    found = [d for d in target.referrers(digest, mt.SIGSTORE_BUNDLE) if _predicate(d) == "cosign"]
    assert len(found) == 1, found
    return read_payload(target, found[0])


def _predicate(d: object) -> str:
    annotations = getattr(d, "annotations", None) or {}
    return "cosign" if "sigstore.dev/cosign" in annotations.get(mt.ANN_BUNDLE_PREDICATE, "") else "other"


def open_target(b: Built, ref: str) -> tuple[Targets, Target]:
    """The repository `ref` names; close the Targets when done."""
    targets = Targets(store_path=b.store.root, environ={})
    return targets, targets.open(ref).target


def sigstore_verify(bundle: Path, public_key: Path, digest: str) -> subprocess.CompletedProcess[str]:
    """@sigstore/verify's verdict on a release signature bundle with the public key (no tlog, no CA)."""
    if not (VERIFIERS / "node_modules" / "@sigstore" / "verify").is_dir():
        pytest.fail("tests/verifiers/node_modules is missing: run scripts/test-env install (npm ci)")
    return subprocess.run(
        ["node", str(VERIFIERS / "verify-release.js"), str(bundle), str(public_key), digest],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def model_signing_verify(folder: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    """The `model_signing` command line's verdict on an unpacked folder and its model.sig."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            str(folder),
            "--signature",
            str(folder / "model.sig"),
            "--public_key",
            str(public_key),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
