"""The Deployment and Service of one track (stable or canary), as plain dicts in the API's field order.

The pod runs as the image's own non-root user (image.config.NONROOT) with a read-only root file system;
/tmp is an emptyDir in memory because Python and onnxruntime write temporary files there. Probes ask the
runtime's V2 health paths on the named port, so the Service and the probes follow a port change alone.
"""

from __future__ import annotations

from typing import Any

from modelpack.deploy.kubernetes.model import KubeDeployment, Track

CONTAINER = "model"
PORT_NAME = "http"
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"
# image.config.NONROOT, numerically: Kubernetes' runAsNonRoot can only verify a numeric user.
UID = GID = 65532
STABLE_IMAGE = "modelpack/stable"  # placeholders the overlay's `images:` pins by digest
CANARY_IMAGE = "modelpack/canary"
ANN = "modelpack.dev"  # our annotation and label prefix


def labels(dep: KubeDeployment, track: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": dep.name,
        "app.kubernetes.io/managed-by": "modelpack",
        f"{ANN}/track": track,
    }


def selector(dep: KubeDeployment, track: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": dep.name, f"{ANN}/track": track}


def object_name(dep: KubeDeployment, track: str) -> str:
    return dep.name if track == "stable" else f"{dep.name}-{track}"


def release_annotations(dep: KubeDeployment, release: Track) -> dict[str, str]:
    """Who runs what, on the objects themselves: `kubectl get -o yaml` answers without the registry."""
    return {
        f"{ANN}/repository": dep.repository,
        f"{ANN}/environment": dep.environment,
        f"{ANN}/version": release.version,
        f"{ANN}/release": release.digest,
    }


def container(dep: KubeDeployment, image: str, port: int, release: Track | None) -> dict[str, Any]:
    """The serving container. `release` None gives the base's release-independent container (the overlay
    patches in the port, the digest env and the resources)."""
    env = [{"name": "PORT", "value": str(port)}]
    if release is not None:
        # /metadata reports it, so a probe or a canary analysis can tell which release answered
        env.append({"name": "MODELPACK_INDEX_DIGEST", "value": release.digest})
    probe = {"httpGet": {"path": LIVE_PATH, "port": PORT_NAME}, "periodSeconds": 10, "timeoutSeconds": 2}
    return {
        "name": CONTAINER,
        "image": image,
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "requests": {"cpu": dep.resources.cpu, "memory": dep.resources.memory},
            "limits": {"memory": dep.resources.memory},
        },
        # a large model loads for a while: the startup probe holds liveness off for up to 10 minutes
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 300},
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": GID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment(
    dep: KubeDeployment, track: str, image: str, port: int, release: Track | None
) -> dict[str, Any]:
    meta_ann = release_annotations(dep, release) if release is not None else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": object_name(dep, track), "labels": labels(dep, track), **_ann(meta_ann)},
        "spec": {
            "replicas": dep.replicas,
            "selector": {"matchLabels": selector(dep, track)},
            # a new pod is ready before an old one goes: a switch never drops capacity
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(dep, track),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(port),
                        "prometheus.io/path": METRICS_PATH,
                        **meta_ann,
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": GID,
                        "fsGroup": GID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container(dep, image, port, release)],
                    "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def service(dep: KubeDeployment, track: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": object_name(dep, track), "labels": labels(dep, track)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(dep, track),
            "ports": [{"name": PORT_NAME, "port": 80, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def _ann(annotations: dict[str, str]) -> dict[str, Any]:
    return {"annotations": annotations} if annotations else {}
