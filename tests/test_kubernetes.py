"""The Kubernetes target's renderers: manifests rendered by the real kubectl (kustomize), validated strictly
against the Kubernetes OpenAPI schemas (kubernetes-validate) and the vendored CRDs; the bundle's layer;
kubectl apply run for real against a server that is not there. No cluster runs here: what a cluster would
do beyond schema and apply is not tested (test_kubernetes_deploy.py has the registry side)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import support.crds as crds
from support.kube import KUBECTL, by_kind, unreachable_kubeconfig, validate
from support.kube import kustomize as kustomize_

from modelpack.deploy.kubernetes import kserve, kustomize, rollouts
from modelpack.deploy.kubernetes import kubectl as kc
from modelpack.deploy.kubernetes.bundle import layer_bytes
from modelpack.deploy.kubernetes.files import write_tree
from modelpack.deploy.kubernetes.model import GatewayRef, KubeDeployment, Track
from modelpack.errors import UsageError

A, B = ("sha256:" + c * 64 for c in "ab")
REPO = "registry.example:5000/team/iris-onnx"


def _dep(**kw: Any) -> KubeDeployment:
    base: dict[str, Any] = {
        "name": "iris-onnx",
        "environment": "prod",
        "repository": REPO,
        "stable": Track("1.0.0", A),
        "port": 9090,
    }
    return KubeDeployment(**{**base, **kw})


def test_kubectl_is_the_wheels_and_recent() -> None:
    out = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True)
    minor = int(re.sub(r"\D", "", json.loads(out.stdout)["clientVersion"]["minor"]))
    assert minor >= 33


def test_overlay_pins_digests_and_validates_strictly(tmp_path: Path) -> None:
    write_tree(tmp_path, kustomize.render(_dep(replicas=3)))
    docs = kustomize_(tmp_path / "overlays" / "prod")
    validate(docs)
    objs = by_kind(docs)
    assert set(objs) == {("Deployment", "iris-onnx"), ("Service", "iris-onnx")}
    deploy = objs["Deployment", "iris-onnx"]
    assert deploy["metadata"]["namespace"] == "prod" and deploy["spec"]["replicas"] == 3
    pod = deploy["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["image"] == f"{REPO}@{A}"
    assert c["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    assert {e["name"]: e["value"] for e in c["env"]} == {"PORT": "9090", "MODELPACK_INDEX_DIGEST": A}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["runAsUser"] == 65532
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["spec"]["volumes"][0]["emptyDir"]["medium"] == "Memory"
    ann = pod["metadata"]["annotations"]
    assert (ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/path"]) == (
        "true",
        "9090",
        "/metrics",
    )
    assert ann["modelpack.dev/release"] == A
    assert objs["Service", "iris-onnx"]["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    # Flux's setter marker sits on the stable digest line of the overlay
    kust = (tmp_path / "overlays" / "prod" / "kustomization.yaml").read_text()
    assert f'digest: {A} # {{"$imagepolicy": "flux-system:iris-onnx-prod:digest"}}' in kust


def test_a_canary_adds_a_deployment_and_an_httproute_with_its_weight(tmp_path: Path) -> None:
    dep = _dep(canary=Track("1.1.0", B), weight=10, canary_port=8081, gateway=GatewayRef("edge", "infra"))
    write_tree(tmp_path, kustomize.render(dep))
    docs = kustomize_(tmp_path / "overlays" / "prod")
    validate(docs)
    objs = by_kind(docs)
    stable, canary = objs["Deployment", "iris-onnx"], objs["Deployment", "iris-onnx-canary"]
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPO}@{A}"
    cc = canary["spec"]["template"]["spec"]["containers"][0]
    assert cc["image"] == f"{REPO}@{B}" and cc["ports"][0]["containerPort"] == 8081
    assert canary["spec"]["selector"] != stable["spec"]["selector"]
    route = objs["HTTPRoute", "iris-onnx"]
    assert (
        route["spec"]["parentRefs"][0]["name"] == "edge"
        and route["spec"]["parentRefs"][0]["namespace"] == "infra"
    )
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"iris-onnx": 90, "iris-onnx-canary": 10}
    svc = objs["Service", "iris-onnx-canary"]
    assert svc["spec"]["selector"] == canary["spec"]["selector"]["matchLabels"]


def test_the_base_is_the_same_for_every_environment_and_release() -> None:
    prod = kustomize.render(_dep())
    staging = kustomize.render(_dep(environment="staging", stable=Track("2.0.0", B), port=7000, replicas=4))
    base = {k: v for k, v in prod.items() if k.startswith("base/")}
    assert base and base == {k: v for k, v in staging.items() if k.startswith("base/")}


def test_rewriting_replaces_an_overlay_whole_and_leaves_the_rest(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("ours")
    write_tree(tmp_path, kustomize.render(_dep(environment="staging")))
    write_tree(tmp_path, kustomize.render(_dep(canary=Track("1.1.0", B), weight=50)))
    assert (tmp_path / "overlays" / "prod" / "httproute.yaml").is_file()
    write_tree(tmp_path, kustomize.render(_dep(stable=Track("1.1.0", B))))  # the canary finished
    assert sorted(p.name for p in (tmp_path / "overlays" / "prod").iterdir()) == [
        "kustomization.yaml",
        "stable-patch.yaml",
    ]
    assert (tmp_path / "overlays" / "staging" / "kustomization.yaml").is_file()
    assert (tmp_path / "README.md").read_text() == "ours"
    assert not [p for p in tmp_path.rglob(".*")]  # no staging directory left behind


def test_kserve_inference_service_validates_against_the_crd(tmp_path: Path) -> None:
    write_tree(tmp_path, kserve.render(_dep()))
    (isvc,) = kustomize_(tmp_path / "overlays" / "prod")
    validate([isvc])
    pred = isvc["spec"]["predictor"]
    (c,) = pred["containers"]
    assert c["name"] == "kserve-container" and c["image"] == f"{REPO}@{A}"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 9090}
    assert "canaryTrafficPercent" not in pred
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"


def test_kserve_canary_is_canary_traffic_percent(tmp_path: Path) -> None:
    write_tree(tmp_path, kserve.render(_dep(canary=Track("1.1.0", B), weight=25)))
    (isvc,) = kustomize_(tmp_path / "overlays" / "prod")
    validate([isvc])
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == f"{REPO}@{B}"
    assert isvc["metadata"]["annotations"]["modelpack.dev/stable-release"] == A
    with pytest.raises(UsageError, match="Standard mode runs canaries only"):
        kserve.render(_dep(canary=Track("1.1.0", B), weight=25), "standard")


@pytest.mark.parametrize("canary", [False, True])
def test_argo_rollout_validates_against_the_crd(tmp_path: Path, canary: bool) -> None:
    dep = _dep(canary=Track("1.1.0", B), weight=20) if canary else _dep()
    write_tree(tmp_path, rollouts.render(dep))
    docs = kustomize_(tmp_path / "overlays" / "prod")
    validate(docs)
    objs = by_kind(docs)
    ro = objs["Rollout", "iris-onnx"]
    assert ro["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPO}@{B if canary else A}"
    strategy = ro["spec"]["strategy"]["canary"]
    assert (strategy["stableService"], strategy["canaryService"]) == ("iris-onnx", "iris-onnx-canary")
    assert strategy["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"]["httpRoute"] == "iris-onnx"
    # a canary pauses at the environment's weight; without one the template rolls out in full
    assert strategy["steps"] == ([{"setWeight": 20}, {"pause": {}}] if canary else [])
    assert ro["metadata"]["annotations"]["modelpack.dev/stable-release"] == A
    weights = [b["weight"] for b in objs["HTTPRoute", "iris-onnx"]["spec"]["rules"][0]["backendRefs"]]
    assert weights == ([80, 20] if canary else [100, 0])


def test_the_crd_check_is_strict() -> None:
    route = kustomize.httproute(_dep(canary=Track("1.1.0", B), weight=10))
    crds.validate(route)
    route["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 5
    with pytest.raises(Exception, match="wieght"):
        crds.validate(route)


def test_vendored_crds_match_their_readme() -> None:
    readme = (crds.CRDS / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|.*\| ([0-9a-f]{64}) \|$", readme, re.M)
    assert {name for name, _ in rows} == {p.name for p in crds.CRDS.glob("*.yaml.gz")}
    for name, sha in rows:
        assert hashlib.sha256(gzip.decompress((crds.CRDS / name).read_bytes())).hexdigest() == sha, name


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"canary": Track("1.1.0", B), "weight": 100}, "outside 1-99"),
        ({"canary": Track("1.1.0", B), "weight": 0}, "outside 1-99"),
        ({"weight": 5}, "needs a canary"),
        ({"name": "Iris_ONNX"}, "cannot name Kubernetes objects"),
        ({"namespace": "Prod"}, "RFC 1123"),
        ({"port": 0}, "outside 1-65535"),
    ],
)
def test_bad_input_is_one_line(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError, match=needle) as e:
        _dep(**kw)
    assert "\n" not in str(e.value)


def test_apply_runs_kubectl_against_the_context_and_reports_its_error(tmp_path: Path) -> None:
    """The real kubectl, a kubeconfig whose context points at a loopback port nothing listens on: the
    command line is what --apply runs, and the failure is kubectl's own one line. No cluster was reached."""
    write_tree(tmp_path / "out", kustomize.render(_dep()))
    kubeconfig, port = unreachable_kubeconfig(tmp_path)
    overlay = tmp_path / "out" / "overlays" / "prod"
    args = kc.command(KUBECTL, overlay, "staging-eu")
    assert args == [
        KUBECTL,
        "--context",
        "staging-eu",
        "apply",
        "--server-side",
        "--field-manager=modelpack",
        "-k",
        str(overlay),
    ]

    def runner(argv: Any, timeout: float) -> kc.Completed:
        done = subprocess.run(
            [*argv, "--request-timeout=5s"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        return kc.Completed(done.returncode, done.stdout, done.stderr)

    with pytest.raises(kc.ApplyError) as e:
        kc.apply(runner, args)
    message = str(e.value)
    assert message.startswith("kubectl apply failed: ") and f"127.0.0.1:{port}" in message, message
    assert "connection refused" in message
    with pytest.raises(UsageError, match="--context"):
        kc.command(KUBECTL, overlay, "bad context name")


def test_bundle_layer_is_deterministic() -> None:
    tree = kustomize.render(_dep())
    assert layer_bytes(tree) == layer_bytes(dict(reversed(list(tree.items()))))
    with tarfile.open(fileobj=io.BytesIO(layer_bytes(tree)), mode="r:gz") as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == sorted(tree)
        assert {m.mtime for m in tar.getmembers()} == {0}
