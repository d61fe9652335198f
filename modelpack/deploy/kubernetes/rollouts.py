"""An Argo Rollouts `Rollout` instead of the two Deployments: the controller moves the Gateway API
HTTPRoute's weights (its gatewayAPI traffic-router plugin) while the overlay still says everything.

The environment's state maps onto the Rollout's spec, checked against Argo Rollouts v1.9.1's controller
(rollout/canary.go: a change of pod template or steps resets the step index; a template equal to the
stable ReplicaSet's skips the steps):
- no canary: the stable release's template, no steps (a new release rolls out in full once ready);
- a canary at W%: the canary's template, steps `setWeight: W` then an indefinite `pause`;
- finished (a plain promote): the same template, no steps: the canary becomes stable;
- aborted (a rollback): the stable template again, which Argo Rollouts recognises as a rollback to stable.
The stable digest lives in the controller's status, as with KServe; the overlay records it in an annotation.
"""

from __future__ import annotations

from typing import Any

from modelpack.deploy.kubernetes import workload as wl
from modelpack.deploy.kubernetes.files import dump
from modelpack.deploy.kubernetes.kustomize import KUSTOMIZATION, flux_policy_ref, httproute
from modelpack.deploy.kubernetes.model import KubeDeployment

API = "argoproj.io/v1alpha1"
PLUGIN = "argoproj-labs/gatewayAPI"  # the Gateway API traffic router plugin's registered name
IMAGE = "modelpack/rollout"  # kustomize's image transformer already knows spec/template/spec/containers[]


def render(dep: KubeDeployment) -> dict[str, bytes]:
    overlay = f"overlays/{dep.environment}"
    running = dep.canary or dep.stable
    kust: dict[str, Any] = {
        **KUSTOMIZATION,
        "namespace": dep.ns,
        "resources": ["rollout.yaml", "services.yaml", "httproute.yaml"],
        "images": [{"name": IMAGE, "newName": dep.repository, "digest": running.digest}],
    }
    text = dump(kust).decode()
    if dep.canary is None:
        line = f"  digest: {running.digest}\n"
        text = text.replace(line, f'{line[:-1]} # {{"$imagepolicy": "{flux_policy_ref(dep)}:digest"}}\n', 1)
    return {
        f"{overlay}/kustomization.yaml": text.encode(),
        f"{overlay}/rollout.yaml": dump(rollout(dep)),
        f"{overlay}/services.yaml": dump(*services(dep)),
        f"{overlay}/httproute.yaml": dump(httproute(dep)),
    }


def rollout(dep: KubeDeployment) -> dict[str, Any]:
    running = dep.canary or dep.stable
    port = (dep.canary_port or dep.port) if dep.canary else dep.port
    template = wl.deployment(dep, "stable", IMAGE, port, running)["spec"]["template"]
    for labels in (template["metadata"]["labels"],):
        labels.pop(f"{wl.ANN}/track")  # Argo Rollouts tells stable from canary by its own hash label
    annotations = wl.release_annotations(dep, running)
    annotations[f"{wl.ANN}/stable-release"] = dep.stable.digest
    steps: list[dict[str, Any]] = []
    if dep.canary is not None:
        annotations[f"{wl.ANN}/canary-weight"] = str(dep.weight)
        steps = [{"setWeight": dep.weight}, {"pause": {}}]
    return {
        "apiVersion": API,
        "kind": "Rollout",
        "metadata": {"name": dep.name, "labels": _labels(dep), "annotations": annotations},
        "spec": {
            "replicas": dep.replicas,
            "selector": {"matchLabels": _selector(dep)},
            "template": template,
            "strategy": {
                "canary": {
                    "stableService": wl.object_name(dep, "stable"),
                    "canaryService": wl.object_name(dep, "canary"),
                    "trafficRouting": {"plugins": {PLUGIN: {"httpRoute": dep.name, "namespace": dep.ns}}},
                    "steps": steps,
                }
            },
        },
    }


def services(dep: KubeDeployment) -> list[dict[str, Any]]:
    """Both select every pod of the app: Argo Rollouts adds the ReplicaSet hash to each selector."""
    out = []
    for track in ("stable", "canary"):
        svc = wl.service(dep, track)
        svc["metadata"]["labels"] = _labels(dep)
        svc["spec"]["selector"] = _selector(dep)
        out.append(svc)
    return out


def _labels(dep: KubeDeployment) -> dict[str, str]:
    return {"app.kubernetes.io/name": dep.name, "app.kubernetes.io/managed-by": "modelpack"}


def _selector(dep: KubeDeployment) -> dict[str, str]:
    return {"app.kubernetes.io/name": dep.name}
