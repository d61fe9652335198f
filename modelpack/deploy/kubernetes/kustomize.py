"""A kustomize base (the release-independent Deployment and Service) and one overlay per environment that
pins what the environment runs by digest; during a canary the overlay adds the canary's Deployment and
Service and a Gateway API HTTPRoute that splits traffic by the canary's weight.

The base is the same bytes for every environment and release: what depends on a release (its port, the
digest env, resources, annotations) is patched in by the overlay, so writing prod never changes what
staging renders. Images are placeholders in the base and `images:` entries in the overlay, the field
kustomize, Argo CD Image Updater (kustomize write-back) and Flux's setters all edit.
"""

from __future__ import annotations

from typing import Any

from modelpack.deploy.kubernetes import workload as wl
from modelpack.deploy.kubernetes.files import dump
from modelpack.deploy.kubernetes.model import KubeDeployment, Track

KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
BASE_PORT = 8080  # the base's port; every overlay patches in its release's own
HTTPROUTE_API = "gateway.networking.k8s.io/v1"


def render(dep: KubeDeployment) -> dict[str, bytes]:
    """base/ and overlays/<environment>/ as relative path -> bytes."""
    overlay = f"overlays/{dep.environment}"
    tree: dict[str, bytes] = {
        "base/kustomization.yaml": dump({**KUSTOMIZATION, "resources": ["deployment.yaml", "service.yaml"]}),
        "base/deployment.yaml": dump(
            wl.deployment(_base_dep(dep), "stable", wl.STABLE_IMAGE, BASE_PORT, None)
        ),
        "base/service.yaml": dump(wl.service(dep, "stable")),
        f"{overlay}/stable-patch.yaml": dump(_release_patch(dep, dep.stable, dep.port)),
    }
    resources = ["../../base"]
    if dep.canary is not None:
        port = dep.canary_port or dep.port
        tree[f"{overlay}/canary.yaml"] = dump(
            wl.deployment(dep, "canary", wl.CANARY_IMAGE, port, dep.canary), wl.service(dep, "canary")
        )
        tree[f"{overlay}/httproute.yaml"] = dump(httproute(dep))
        resources += ["canary.yaml", "httproute.yaml"]
    tree[f"{overlay}/kustomization.yaml"] = kustomization(dep, resources)
    return tree


def kustomization(dep: KubeDeployment, resources: list[str]) -> bytes:
    doc: dict[str, Any] = {
        **KUSTOMIZATION,
        "namespace": dep.ns,
        "resources": resources,
        "labels": [
            {
                "pairs": {f"{wl.ANN}/environment": dep.environment},
                "includeSelectors": False,
                "includeTemplates": True,
            }
        ],
        "patches": [
            {"path": "stable-patch.yaml", "target": {"kind": "Deployment", "name": dep.name}},
        ],
        "images": [_image(dep, wl.STABLE_IMAGE, dep.stable)],
    }
    if dep.canary is not None:
        doc["images"].append(_image(dep, wl.CANARY_IMAGE, dep.canary))
    text = dump(doc).decode()
    # Flux image automation's setter marker on the stable digest: an ImagePolicy that follows the
    # environment tag (digestReflectionPolicy: Always) rewrites this line; gitops/ holds that policy.
    line = f"  digest: {dep.stable.digest}\n"
    marker = f'  digest: {dep.stable.digest} # {{"$imagepolicy": "{flux_policy_ref(dep)}:digest"}}\n'
    text = text.replace(line, marker, 1)
    return text.encode()


def flux_policy_ref(dep: KubeDeployment) -> str:
    return f"flux-system:{dep.name}-{dep.ns}"


def _image(dep: KubeDeployment, placeholder: str, track: Track) -> dict[str, str]:
    return {"name": placeholder, "newName": dep.repository, "digest": track.digest}


def _release_patch(dep: KubeDeployment, release: Track, port: int) -> list[dict[str, Any]]:
    """JSON patch (RFC 6902) of the base Deployment: whole lists replaced, never merged, so a release's
    port never sits beside the base's."""
    c = wl.container(dep, wl.STABLE_IMAGE, port, release)
    tmpl = "/spec/template"
    ann = wl.release_annotations(dep, release)
    return [
        {"op": "add", "path": "/metadata/annotations", "value": ann},
        {"op": "replace", "path": "/spec/replicas", "value": dep.replicas},
        {"op": "add", "path": f"{tmpl}/metadata/annotations/prometheus.io~1port", "value": str(port)},
        *(
            {"op": "add", "path": f"{tmpl}/metadata/annotations/{k.replace('/', '~1')}", "value": v}
            for k, v in ann.items()
        ),
        {"op": "replace", "path": f"{tmpl}/spec/containers/0/ports", "value": c["ports"]},
        {"op": "replace", "path": f"{tmpl}/spec/containers/0/env", "value": c["env"]},
        {"op": "replace", "path": f"{tmpl}/spec/containers/0/resources", "value": c["resources"]},
    ]


def _base_dep(dep: KubeDeployment) -> KubeDeployment:
    """The base is release-independent: default resources, one replica (the overlay patches both)."""
    from dataclasses import replace

    from modelpack.deploy.kubernetes.model import Resources

    return replace(dep, resources=Resources(), replicas=1)


def httproute(dep: KubeDeployment) -> dict[str, Any]:
    """All paths to the stable Service and the canary's, weighted: the Gateway does the split (weight 0
    for the canary when none runs: the Argo Rollouts overlay keeps its route between canaries)."""
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": dep.gateway.name,
    }
    if dep.gateway.namespace:
        parent["namespace"] = dep.gateway.namespace
    backends = [
        {"name": wl.object_name(dep, "stable"), "port": 80, "weight": 100 - dep.weight},
        {"name": wl.object_name(dep, "canary"), "port": 80, "weight": dep.weight},
    ]
    return {
        "apiVersion": HTTPROUTE_API,
        "kind": "HTTPRoute",
        "metadata": {
            "name": dep.name,
            "labels": wl.labels(dep, "route"),
            "annotations": {f"{wl.ANN}/canary-weight": str(dep.weight)},
        },
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"group": "", "kind": "Service", **b} for b in backends],
                }
            ],
        },
    }
