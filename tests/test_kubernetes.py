"""The Kubernetes target: manifests rendered by the real kubectl (kustomize), validated strictly against
the Kubernetes OpenAPI schemas (kubernetes-validate) and the vendored CRDs; the deployment bundle pushed to
the real registry and pulled back by digest with skopeo; kubectl apply run for real against a server that
is not there. No cluster runs here: what a cluster would do beyond schema and apply is not tested."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import support.crds as crds
import yaml
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.kube import KUBECTL, by_kind, validate
from support.kube import kustomize as kustomize_
from support.places import runtime
from support.release_fixtures import build, index_release, push, variant

from modelpack import api
from modelpack.deploy.kubernetes import kserve, kustomize, rollouts
from modelpack.deploy.kubernetes import kubectl as kc
from modelpack.deploy.kubernetes.bundle import layer_bytes
from modelpack.deploy.kubernetes.files import write_tree
from modelpack.deploy.kubernetes.model import GatewayRef, KubeDeployment, Track
from modelpack.environment.place import Place
from modelpack.environment.promote import promote
from modelpack.errors import NotFoundError, UsageError
from modelpack.oci import mediatypes as mt
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

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
    kubeconfig, port = _unreachable_kubeconfig(tmp_path)
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


# --- against the real registry: the environment's events decide what is written and pushed


@pytest.fixture(scope="module")
def releases(
    registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, str]]:
    """Two index releases (bundle + a minimal linux/amd64 image) pushed to one repository."""
    tmp = tmp_path_factory.mktemp("k8s")
    store = LayoutStore(tmp / "store")
    repo = f"{registry.host}/t/k8s-iris"
    digests = {}
    for i, version in enumerate(("1.0.0", "1.1.0")):
        bundle = build(variant(tmp, "iris-onnx", model_extra=b"\0" * i), store, version)
        index_release(store, bundle, f"iris-onnx:{version}-index")
        digests[version] = push(store, f"iris-onnx:{version}-index", f"{repo}:{version}")
    return repo, digests


def _pull_bundle(ref: str, dest: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """skopeo copies the artifact by digest into an OCI layout; its one layer's files come back."""
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:b"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    index = json.loads((dest / "index.json").read_text())
    man = json.loads((dest / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    (layer,) = man["layers"]
    data = (dest / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    return man, files


def test_deploy_writes_and_pushes_what_the_environment_names(
    releases: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    repo, digests = releases
    with Targets(environ={}) as targets:
        place = Place.of(targets.open(repo))
        with pytest.raises(NotFoundError, match="names no release"):
            api.kubernetes_manifests(targets, repo, "prod", tmp_path / "none")
        promote(place, "1.0.0", "prod", force=True, reason="k8s test", runtime=runtime())
        promote(place, "1.1.0", "prod", force=True, reason="k8s test", runtime=runtime(), canary=10)
        out = tmp_path / "deploy"
        result = api.kubernetes_manifests(targets, repo, "prod", out, gateway="edge")
    assert (result.stable, result.canary, result.weight) == (digests["1.0.0"], digests["1.1.0"], 10)
    # what the HTTPRoute carries is the canary event's weight
    objs = by_kind(kustomize_(out / "overlays" / "prod"))
    validate(list(objs.values()))
    weights = {
        b["name"]: b["weight"] for b in objs["HTTPRoute", "k8s-iris"]["spec"]["rules"][0]["backendRefs"]
    }
    assert weights == {"k8s-iris": 90, "k8s-iris-canary": 10}
    image = objs["Deployment", "k8s-iris-canary"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{repo}@{digests['1.1.0']}"
    # the deployment bundle, pulled back by digest, holds exactly the files written (gitops/ aside)
    assert result.bundle is not None and result.bundle_tag == "deploy-prod"
    man, files = _pull_bundle(result.bundle, tmp_path / "pulled")
    assert man["artifactType"] == mt.DEPLOYMENT_BUNDLE_ARTIFACT
    assert man["subject"]["digest"] == digests["1.1.0"]  # the release it introduces
    assert man["layers"][0]["mediaType"] == "application/vnd.cncf.flux.content.v1.tar+gzip"
    on_disk = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert files == {k: v for k, v in on_disk.items() if not k.startswith("gitops/")}
    tagged = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:deploy-prod"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert hashlib.sha256(tagged).hexdigest() == result.bundle.split("@sha256:")[1]
    # the GitOps objects point at that tag and that overlay, and name the policy the setter marker names
    flux = by_kind([d for d in yaml.safe_load_all((out / "gitops" / "prod" / "flux.yaml").read_text())])
    source = flux["OCIRepository", "k8s-iris-prod"]["spec"]
    assert (source["url"], source["ref"], source["layerSelector"]["mediaType"]) == (
        f"oci://{repo}",
        {"tag": "deploy-prod"},
        mt.FLUX_CONTENT_TGZ,
    )
    assert flux["Kustomization", "k8s-iris-prod"]["spec"]["path"] == "./overlays/prod"
    assert flux["ImagePolicy", "k8s-iris-prod"]["spec"]["filterTags"]["pattern"] == "^prod$"
    assert (
        '"$imagepolicy": "flux-system:k8s-iris-prod:digest"'
        in files["overlays/prod/kustomization.yaml"].decode()
    )
    app = yaml.safe_load((out / "gitops" / "prod" / "argocd.yaml").read_text())
    assert app["spec"]["source"] == {
        "repoURL": f"oci://{repo}",
        "targetRevision": "deploy-prod",
        "path": "overlays/prod",
    }
    updater = "argocd-image-updater.argoproj.io"
    assert app["metadata"]["annotations"][f"{updater}/model.update-strategy"] == "digest"
    assert app["metadata"]["annotations"][f"{updater}/image-list"] == f"model={repo}:prod"
    # the bundle is a referrer of the release
    with Targets(environ={}) as targets:
        refs = targets.open(repo).target.referrers(digests["1.1.0"], mt.DEPLOYMENT_BUNDLE_ARTIFACT)
    assert [r.digest for r in refs] == [result.bundle.split("@")[1]]


def test_deploy_command_line(releases: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    repo, digests = releases
    with Targets(environ={}) as targets:
        promote(Place.of(targets.open(repo)), "1.0.0", "staging", force=True, reason="k8s", runtime=runtime())
        # the environment's spec names KServe: --kubernetes follows it without --kserve
        api.env_set(targets, repo, "staging", target="kserve", replicas=2, runtime=runtime())
    out = tmp_path / "d"
    done = run_cli("deploy", repo, "staging", "--kubernetes", str(out), "--no-push", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["kind"] == "kserve" and doc["bundle"] is None and doc["canary"] is None
    assert doc["stable"]["digest"] == digests["1.0.0"]
    (isvc,) = kustomize_(out / "overlays" / "staging")
    validate([isvc])
    assert isvc["spec"]["predictor"]["minReplicas"] == 2  # the spec's replicas
    for args, needle in (
        (["--kubernetes", str(out), "--context", "x"], "needs --apply"),
        (["--apply"], "go with --kubernetes DIR"),
        (["--kubernetes", str(out), "--kserve", "--argo-rollouts"], "choose one"),
        (["--kubernetes", str(out), "--watch"], "the Docker target's"),
        (["--kubernetes", str(out), "--gateway", "a/b/c"], "--gateway"),
        (["--kubernetes", str(out), "--memory", "lots"], "not a Kubernetes quantity"),
    ):
        bad = run_cli("deploy", repo, "staging", *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and needle in bad.stderr, bad.stderr


def test_the_init_workflow_gitops_step_runs_as_written(
    releases: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """The GitOps step `modelpack init` writes, its `run:` script run by bash as the runner would."""
    import os

    from modelpack import init as scaffold

    repo, digests = releases
    scaffold.init(tmp_path / "proj", handler="python")
    wf = yaml.safe_load((tmp_path / "proj" / ".github" / "workflows" / "modelpack.yml").read_text())
    (step,) = [s for s in wf["jobs"]["release"]["steps"] if s.get("name", "").startswith("GitOps")]
    with Targets(environ={}) as targets:
        place = Place.of(targets.open(repo))
        promote(place, "1.1.0", "qa", force=True, reason="k8s", runtime=runtime())
    env = {**os.environ, "REPO": repo, "RUNNER_TEMP": str(tmp_path), "DEPLOY_ENV": "qa"}

    def run_step() -> subprocess.CompletedProcess[str]:
        bin_dir = str(Path(sys.executable).parent)  # the modelpack console script
        return subprocess.run(
            ["bash", "-eo", "pipefail", "-c", step["run"]],
            env={**env, "PATH": f"{bin_dir}:{env['PATH']}"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = run_step()  # no spec: the docker default, nothing written
    assert done.returncode == 0 and "no Kubernetes manifests" in done.stdout, done.stderr
    assert not (tmp_path / "deploy").exists()
    with Targets(environ={}) as targets:
        api.env_set(targets, repo, "qa", target="kubernetes", runtime=runtime())
    done = run_step()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "deploy" / "overlays" / "qa" / "kustomization.yaml").is_file()
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:deploy-qa"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(raw)["subject"]["digest"] == digests["1.1.0"]


def _unreachable_kubeconfig(tmp_path: Path) -> tuple[Path, int]:
    import socket

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


def test_deploy_apply_from_the_command_line(releases: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """`--apply --context`: the files and the bundle first, then kubectl's own failure as one line (exit 1);
    without kubectl on PATH, a usage error before anything is written."""
    repo, _ = releases
    with Targets(environ={}) as targets:
        promote(Place.of(targets.open(repo)), "1.0.0", "dev", force=True, reason="k8s", runtime=runtime())
    kubeconfig, port = _unreachable_kubeconfig(tmp_path)
    out = tmp_path / "out"
    env = {
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{Path(KUBECTL).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    done = run_cli(
        "deploy", repo, "dev", "--kubernetes", str(out), "--apply", "--context", "staging-eu", env=env
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: kubectl apply failed: ") and done.stderr.count("\n") == 1
    assert f"127.0.0.1:{port}" in done.stderr and "connection refused" in done.stderr
    assert (out / "overlays" / "dev" / "kustomization.yaml").is_file()  # written before kubectl ran
    empty = tmp_path / "bin"
    empty.mkdir()
    other = tmp_path / "other"
    bad = run_cli(
        "deploy", repo, "dev", "--kubernetes", str(other), "--apply", env={**env, "PATH": str(empty)}
    )
    assert bad.returncode == 2 and "no kubectl on PATH" in bad.stderr and bad.stderr.count("\n") == 1
    assert not other.exists()
