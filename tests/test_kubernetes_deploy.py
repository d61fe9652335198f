"""`modelpack deploy REPO ENV --kubernetes DIR` against the real registry: the environment's events decide
what is written (the canary's weight in the HTTPRoute), the deployment bundle is pushed and pulled back by
digest with skopeo, the command line's errors are one line, `--apply` runs the real kubectl against a server
that is not there, and the GitOps step `modelpack init` writes runs as written."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.kube import KUBECTL, by_kind, unreachable_kubeconfig, validate
from support.kube import kustomize as kustomize_
from support.places import runtime
from support.release_fixtures import build, index_release, push, variant

from modelpack import api
from modelpack.environment.place import Place
from modelpack.environment.promote import promote
from modelpack.errors import NotFoundError
from modelpack.oci import mediatypes as mt
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets


@pytest.fixture(scope="module")
def releases(
    registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, str]]:
    """Two index releases (bundle + a minimal linux/amd64 image) pushed to one repository, and a bundle-only
    release (no serving image) as 0.9.0."""
    tmp = tmp_path_factory.mktemp("k8s")
    store = LayoutStore(tmp / "store")
    repo = f"{registry.host}/t/k8s-iris"
    digests = {}
    for i, version in enumerate(("1.0.0", "1.1.0")):
        bundle = build(variant(tmp, "iris-onnx", model_extra=b"\0" * i), store, version)
        index_release(store, bundle, f"iris-onnx:{version}-index")
        digests[version] = push(store, f"iris-onnx:{version}-index", f"{repo}:{version}")
    bare = build(variant(tmp, "iris-onnx", model_extra=b"\1"), store, "0.9.0")
    digests["0.9.0"] = push(store, bare.tag, f"{repo}:0.9.0")
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
        (["--kubernetes", str(out), "--kserve", "--kserve-mode", "serverful"], "choose knative or standard"),
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


def test_deploy_apply_from_the_command_line(releases: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """`--apply --context`: the files and the bundle first, then kubectl's own failure as one line (exit 1);
    without kubectl on PATH, a usage error before anything is written."""
    repo, _ = releases
    with Targets(environ={}) as targets:
        promote(Place.of(targets.open(repo)), "1.0.0", "dev", force=True, reason="k8s", runtime=runtime())
    kubeconfig, port = unreachable_kubeconfig(tmp_path)
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


def test_a_release_without_a_serving_image_is_refused_and_nothing_is_written(
    releases: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    repo, _ = releases
    with Targets(environ={}) as targets:
        promote(Place.of(targets.open(repo)), "0.9.0", "bare", force=True, reason="k8s", runtime=runtime())
    out = tmp_path / "out"
    done = run_cli("deploy", repo, "bare", "--kubernetes", str(out))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "has no serving image" in done.stderr
    assert not out.exists()
    unknown = run_cli("deploy", repo, "nowhere", "--kubernetes", str(out))
    assert unknown.returncode == 1 and "names no release" in unknown.stderr and not out.exists()
