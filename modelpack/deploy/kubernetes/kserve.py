"""A KServe InferenceService instead of the Deployment/Service overlay: the serving image as a custom
predictor, pinned by digest through the overlay's `images:` (a kustomize configuration teaches the image
transformer where an InferenceService keeps its container).

Canaries go through `canaryTrafficPercent`, which KServe implements in Knative mode only: the predictor
names the canary's digest and Knative keeps the last revision rolled out at 100% for the rest. KServe
v0.20's own `spec.canary` (Standard, raw-deployment mode) is refused for a custom-container predictor:
its validation wants a stable predictor with a storage URI or a model format, and a modelpack serving
image carries its model inside. So `mode="standard"` writes no canary and says so.
"""

from __future__ import annotations

from typing import Any

from modelpack.deploy.kubernetes import workload as wl
from modelpack.deploy.kubernetes.files import dump
from modelpack.deploy.kubernetes.kustomize import KUSTOMIZATION, flux_policy_ref
from modelpack.deploy.kubernetes.model import KubeDeployment
from modelpack.errors import UsageError

API = "serving.kserve.io/v1beta1"
MODES = {"knative": "Knative", "standard": "Standard"}  # KServe v0.20 names (RawDeployment: old Standard)
CONTAINER = "kserve-container"  # the name KServe looks for in a custom predictor
IMAGE = "modelpack/predictor"

# Where the images transformer finds an InferenceService's images (it knows only built-in kinds).
KUSTOMIZE_CONFIG = {
    "images": [
        {"path": "spec/predictor/containers[]/image", "kind": "InferenceService"},
    ]
}


def render(dep: KubeDeployment, mode: str = "knative") -> dict[str, bytes]:
    if mode not in MODES:
        raise UsageError(f"--kserve-mode {mode!r}: choose knative or standard")
    if dep.canary is not None and mode != "knative":
        raise UsageError(
            f"{dep.environment} has a canary at {dep.weight}%, and KServe's Standard mode runs canaries only "
            "for storage-URI predictors, not a serving image",
            hint="use --kserve-mode knative (canaryTrafficPercent), or leave out --kserve for the "
            "Gateway API HTTPRoute overlay",
        )
    overlay = f"overlays/{dep.environment}"
    running = dep.canary or dep.stable
    kust: dict[str, Any] = {
        **KUSTOMIZATION,
        "namespace": dep.ns,
        "resources": ["inferenceservice.yaml"],
        "configurations": ["kustomizeconfig.yaml"],
        "images": [{"name": IMAGE, "newName": dep.repository, "digest": running.digest}],
    }
    text = dump(kust).decode()
    if dep.canary is None:  # Flux follows the environment tag only outside a canary (as the overlay does)
        line = f"  digest: {running.digest}\n"
        text = text.replace(line, f'{line[:-1]} # {{"$imagepolicy": "{flux_policy_ref(dep)}:digest"}}\n', 1)
    return {
        f"{overlay}/kustomization.yaml": text.encode(),
        f"{overlay}/kustomizeconfig.yaml": dump(KUSTOMIZE_CONFIG),
        f"{overlay}/inferenceservice.yaml": dump(inference_service(dep, mode)),
    }


def inference_service(dep: KubeDeployment, mode: str = "knative") -> dict[str, Any]:
    running = dep.canary or dep.stable
    port = (dep.canary_port or dep.port) if dep.canary else dep.port
    c = wl.container(dep, IMAGE, port, running)
    c["name"] = CONTAINER
    # Knative serves one port, named for its protocol; a probe's port must be that port by number
    c["ports"] = [{"name": "http1", "containerPort": port, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        c[probe] = {**c[probe], "httpGet": {"path": c[probe]["httpGet"]["path"], "port": port}}
    annotations = {
        "serving.kserve.io/deploymentMode": MODES[mode],
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": wl.METRICS_PATH,
        **wl.release_annotations(dep, running),
    }
    predictor: dict[str, Any] = {"minReplicas": dep.replicas}
    if dep.canary is not None:
        annotations[f"{wl.ANN}/stable-release"] = dep.stable.digest
        annotations[f"{wl.ANN}/canary-weight"] = str(dep.weight)
        predictor["canaryTrafficPercent"] = dep.weight
    predictor.update(
        {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": wl.UID,
                "runAsGroup": wl.GID,
                "fsGroup": wl.GID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [c],
            "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
        }
    )
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": dep.name, "labels": wl.labels(dep, "predictor"), "annotations": annotations},
        "spec": {"predictor": predictor},
    }
