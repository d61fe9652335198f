"""The pod template the Kubernetes target writes, run in the test engine with the manifest's own settings:
its image by digest, its user, a read-only root with /tmp as the emptyDir's tmpfs, no capabilities, no
privilege escalation, its env and port; its probes are then asked over HTTP on 127.0.0.1.

What differs from a kubelet, and why: the engine runs on the host network (no bridge here), so HOST=
127.0.0.1 is added to the manifest's env to keep the server off other interfaces; the kubelet's probes
would come from the node instead."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.kube import kustomize, validate
from support.places import runtime
from support.serving import free_port

from modelpack import api
from modelpack.environment.place import Place
from modelpack.environment.promote import promote
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def _docker_run_args(c: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    """docker SDK arguments for the manifest's container: each setting from the manifest itself."""
    sc = c["securityContext"]
    (mount,) = c["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    size = volume["emptyDir"]["sizeLimit"].replace("Mi", "m")
    assert volume["emptyDir"]["medium"] == "Memory"  # so a tmpfs is what the kubelet mounts too
    return {
        "image": c["image"],
        "user": f"{sc['runAsUser']}:{sc['runAsGroup']}",
        "read_only": sc["readOnlyRootFilesystem"],
        "tmpfs": {mount["mountPath"]: f"size={size}"},
        "cap_drop": sc["capabilities"]["drop"],
        "security_opt": [] if sc["allowPrivilegeEscalation"] else ["no-new-privileges"],
        "environment": {**{e["name"]: e["value"] for e in c["env"]}, "HOST": "127.0.0.1"},
    }


@pytest.mark.engine
def test_the_pod_template_runs_as_written_and_answers_its_probes(
    docker_engine: Any, registry: Any, image_store: LayoutStore, tmp_path: Path
) -> None:
    port = free_port()
    project = tmp_path / "iris"
    shutil.copytree(EXAMPLES / "iris-onnx", project)
    doc = yaml.safe_load((project / "modelpack.yaml").read_text())
    doc.setdefault("serving", {})["port"] = port  # the release's own port: what the manifest must carry
    (project / "modelpack.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    store = image_store  # the session's: its deps layer is built once for every image test
    # a version of its own: the session's iris-onnx:1.0.0 must keep naming test_image's build
    built = api.build(
        Targets(store_path=store.root, environ={}),
        project,
        image=True,
        base=docker_engine.base_ref,
        version="0.0.0-k8s",
        environ=EPOCH,
    )
    repo = f"{registry.host}/t/k8s-engine"
    with Targets(store_path=store.root, environ={}) as targets:
        api.push(targets, repo, source=built.tag)
        promote(
            Place.of(targets.open(repo)),
            "0.0.0-k8s",
            "prod",
            force=True,
            reason="k8s engine",
            runtime=runtime(),
        )
        api.kubernetes_manifests(targets, repo, "prod", tmp_path / "deploy", push=False)
    docs = kustomize(tmp_path / "deploy" / "overlays" / "prod")
    validate(docs)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == f"{repo}@{built.digest}"
    assert c["ports"][0]["containerPort"] == port
    run = _docker_run_args(c, pod)
    client = docker_engine.client
    container = client.containers.run(detach=True, network_mode="host", **run)
    try:
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}

        def probe(name: str) -> int:
            get = c[name]["httpGet"]
            url = f"http://127.0.0.1:{ports.get(get['port'], get['port'])}{get['path']}"
            try:
                return httpx.get(url, timeout=get.get("timeoutSeconds", 2)).status_code
            except httpx.TransportError:
                return 0

        deadline = time.monotonic() + 90
        while probe("readinessProbe") != 200:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-2000:]
            assert time.monotonic() < deadline, container.logs().decode()[-2000:]
            time.sleep(0.3)
        assert probe("startupProbe") == 200 and probe("livenessProbe") == 200
        meta = httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=5).json()
        assert meta["index_digest"] == built.digest  # MODELPACK_INDEX_DIGEST from the manifest's env
        container.reload()
        attrs = container.attrs
        assert attrs["Config"]["User"] == "65532:65532"
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
        # the root really is read-only, /tmp really is writable, and the process is not root
        code, out = container.exec_run(
            ["python3", "-c", "import os; open('/tmp/x','w').write('1'); print(os.getuid())"]
        )
        assert code == 0 and out.decode().strip() == "65532"
        code, _ = container.exec_run(["python3", "-c", "open('/written-to-root','w')"])
        assert code != 0
    finally:
        container.remove(force=True)
