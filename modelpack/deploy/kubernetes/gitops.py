"""The objects a GitOps controller needs to follow an environment, written beside the overlay (in
`gitops/<env>/`, applied once to the controller's namespace, never part of the overlay itself):

- Flux: an OCIRepository following the deployment bundle's tag (`deploy-<env>`, Flux's content layer
  extracted) and a Kustomization applying its `overlays/<env>`; plus, for a Git-based setup, an
  ImageRepository and an ImagePolicy that follow the environment tag by digest
  (`digestReflectionPolicy: Always`): the overlay's `images:` carries the setter marker naming it.
- Argo CD: an Application whose source is the deployment bundle, annotated for Argo CD Image Updater's
  `digest` strategy on the environment tag (kustomize image `modelpack/stable`).
"""

from __future__ import annotations

from typing import Any

from modelpack.deploy.kubernetes import workload as wl
from modelpack.deploy.kubernetes.bundle import tag_for
from modelpack.deploy.kubernetes.files import dump
from modelpack.deploy.kubernetes.kustomize import flux_policy_ref
from modelpack.deploy.kubernetes.model import KubeDeployment

FLUX_NS = "flux-system"
ARGOCD_NS = "argocd"
UPDATER = "argocd-image-updater.argoproj.io"


def render(dep: KubeDeployment, image_name: str = wl.STABLE_IMAGE) -> dict[str, bytes]:
    where = f"gitops/{dep.environment}"
    return {f"{where}/flux.yaml": dump(*flux(dep)), f"{where}/argocd.yaml": dump(argocd(dep, image_name))}


def flux(dep: KubeDeployment) -> list[dict[str, Any]]:
    name = flux_policy_ref(dep).split(":", 1)[1]
    meta = {"name": name, "namespace": FLUX_NS}
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": meta,
            "spec": {
                "interval": "1m",
                "url": f"oci://{dep.repository}",
                "ref": {"tag": tag_for(dep.environment)},
                "layerSelector": {
                    "mediaType": "application/vnd.cncf.flux.content.v1.tar+gzip",
                    "operation": "extract",
                },
            },
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": meta,
            "spec": {
                "interval": "5m",
                "sourceRef": {"kind": "OCIRepository", "name": name},
                "path": f"./overlays/{dep.environment}",
                "prune": True,
                "wait": True,
                "timeout": "10m",
            },
        },
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "metadata": meta,
            "spec": {"image": dep.repository, "interval": "1m"},
        },
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImagePolicy",
            "metadata": meta,
            "spec": {
                "imageRepositoryRef": {"name": name},
                # one tag, the environment; its digest is what the setter marker writes
                "filterTags": {"pattern": f"^{dep.environment}$"},
                "policy": {"alphabetical": {"order": "asc"}},
                "digestReflectionPolicy": "Always",
                "interval": "1m",
            },
        },
    ]


def argocd(dep: KubeDeployment, image_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": f"{dep.name}-{dep.ns}",
            "namespace": ARGOCD_NS,
            "annotations": {
                f"{UPDATER}/image-list": f"model={dep.repository}:{dep.environment}",
                f"{UPDATER}/model.update-strategy": "digest",
                f"{UPDATER}/model.kustomize.image-name": image_name,
            },
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": f"oci://{dep.repository}",
                "targetRevision": tag_for(dep.environment),
                "path": f"overlays/{dep.environment}",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": dep.ns},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
            },
        },
    }
