"""Deploy to ready for a 3 GB model on the Docker target (issue 23 item 9, last figure), by hand, not in CI.

    eval "$(scripts/test-env env)"     # the engine, the base image and the HAProxy image
    PYTHONPATH=. .venv/bin/python bench/deploy_big_bench.py              # 3 GB of weights
    PYTHONPATH=. .venv/bin/python bench/deploy_big_bench.py --quick      # 0.25 GB, one round (bench/all)

It starts its own `docker-registry` on a free 127.0.0.1 port, pushes the engine's base image there and
builds two releases of the custom-handler example: 0.9.0 (as it is) and 1.0.0, whose model also holds
`weights.safetensors` of --gb GB (a valid safetensors header, random bytes) and whose handler memory-maps
that file at load (no read of it: what is timed is modelpack's path, not a model's load). 0.9.0 is promoted
to `prod` and deployed, so the proxy runs before the figures. Then, each a whole command with wall time:

  cold    `docker rmi` of 1.0.0's serving image (the engine holds the base layers, not the weight layer),
          `modelpack promote 1.0.0`, then the timed `modelpack deploy REPO prod`: the engine pulls the
          image by digest, the container starts, answers /v2/health/ready and its golden cases, the proxy
          switches to it. The deploy's own progress lines are timestamped (pull + start, then ready).
  peer    `docker rmi` again, then the timed `docker pull REPO@sha256:...` of the same image; and `curl`
          GET of its weight layer to a file (the transfer alone: where the pull's time goes).
  warm    back to 0.9.0, 1.0.0's container removed (its image stays), promote 1.0.0, the timed
          `modelpack deploy`: container start + ready + switch, no pull.
Each time the next request through the proxy must be answered by 1.0.0. The anchor, KServe's modelcar
(a 3.2 GB model ready within 10 s), is a published figure, not measured here. The 1-minute load average
is printed beside each figure (the machine is shared). Containers are removed by their deploy label, the
image by `docker rmi`, the registry by its pid, the temporary directory at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchkit  # bench/, beside this script
from deploy_bench import BODY, push_base
from rollback_bench import Registry, free_port

from modelpack import api
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

ROOT = Path(__file__).resolve().parents[1]
MODELPACK = Path(sys.executable).parent / "modelpack"
ANCHOR_S = 10.0  # KServe modelcar: a 3.2 GB model ready within 10 s (published; not measured here)
LABEL_DIGEST = "dev.modelpack.deploy.digest"
BIG = """
import mmap
import os

from handler import LinearModel


class Big(LinearModel):
    def load(self, model_dir):
        with open(os.path.join(model_dir, "weights.safetensors"), "rb") as f:
            self.mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # mapped, not read
        super().load(model_dir)
"""


def make_safetensors(path: Path, size: int) -> None:
    """A safetensors file of `size` bytes: one U8 tensor of random bytes (16 MiB blocks repeated)."""
    n = size - 256
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (256 - 8 - len(header))
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left = n
        while left:
            f.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def project(tmp: Path, version: str, size: int) -> Path:
    dest = tmp / version
    shutil.copytree(ROOT / "examples" / "custom-handler", dest)
    packfile = dest / "modelpack.yaml"
    text = packfile.read_text().replace("version: 0.1.0", f"version: {version}", 1)
    if size:
        make_safetensors(dest / "weights.safetensors", size)
        (dest / "big.py").write_text(BIG)
        text = text.replace("paths: [weights.json]", "paths: [weights.json, weights.safetensors]", 1)
        text = text.replace("paths: [handler.py]", "paths: [handler.py, big.py]", 1)
        text = text.replace("handler: handler:LinearModel", "handler: big:Big", 1)
    packfile.write_text(text)
    return dest


def load1() -> float:
    return os.getloadavg()[0]


def timed(argv: list[str]) -> tuple[float, list[tuple[float, str]]]:
    """Wall seconds of one command and its output lines, each with its seconds since the start."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rc = proc.wait()
    wall = time.monotonic() - start
    reader.join(10)
    if rc:
        raise SystemExit(f"{' '.join(argv)} failed ({rc}):\n" + "\n".join(t for _, t in lines[-20:]))
    return wall, lines


def answered(url: str) -> str:
    import httpx

    r = httpx.post(url, json=BODY, timeout=30)
    return str(r.json().get("model_version")) if r.status_code == 200 else f"HTTP {r.status_code}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=3.0, help="weights in GB (10^9 bytes); default 3")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="0.25 GB, one round (bench/all)")
    ap.add_argument("--work", default="/var/tmp")
    args = ap.parse_args()
    if args.quick:
        args.gb, args.rounds = 0.25, 1
    proxy = os.environ.get("MODELPACK_TEST_PROXY_IMAGE", "modelpack-test/haproxy:2.6-bookworm")
    tmp = Path(tempfile.mkdtemp(prefix="deploy-big-bench-", dir=args.work))
    try:
        (tmp / "reg").mkdir()
        registry = Registry(tmp / "reg")
        try:
            run(tmp, registry.host, proxy, int(args.gb * 1e9), args.rounds)
        finally:
            registry.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, host: str, proxy: str, size: int, rounds: int) -> None:
    import docker

    client = docker.from_env(version="auto")
    base = push_base(host)
    store = LayoutStore(tmp / "store")
    repo = f"{host}/bench/deploy-big"
    t0 = time.monotonic()
    for version, weights in (("0.9.0", 0), ("1.0.0", size)):
        proj = project(tmp, version, weights)
        with Targets(store_path=store.root) as targets:
            built = api.build(targets, proj, image=True, base=base, environ={"SOURCE_DATE_EPOCH": "0"})
            api.push(targets, f"{repo}:{version}", source=built.tag)
        if weights:
            (proj / "weights.safetensors").unlink()  # the store and the registry hold it now
    print(
        f"built and pushed 0.9.0 and 1.0.0 ({size / 1e9:g} GB) in {time.monotonic() - t0:.0f} s", flush=True
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/house-prices/infer"
    st = ["--store", str(store.root)]
    mp = str(MODELPACK)

    def promote(version: str) -> None:
        subprocess.run(
            [mp, "promote", f"{repo}:{version}", "prod", "--force", "--reason", "bench", *st],
            check=True,
            capture_output=True,
        )

    image = ""
    figures: dict[str, list[float]] = {"cold": [], "pull": [], "curl": [], "warm": []}
    loads: dict[str, list[float]] = {"cold": [], "pull": [], "curl": [], "warm": []}
    with Targets(store_path=store.root) as t:
        api.env_set(
            t,
            repo,
            "prod",
            port=port,
            proxy_image=proxy,
            drain_s=1.0,
            keep_warm_s=600.0,
            ready_timeout_s=600.0,
        )
        try:
            promote("0.9.0")
            timed([mp, "deploy", repo, "prod", *st])
            assert answered(url) == "0.9.0"
            if len(client.images.list(name=repo)) != 1:  # 0.9.0's only (the registry's port is new)
                raise SystemExit(f"the engine already holds another image of {repo}: not a cold deploy")
            for r in range(rounds):
                if image:  # rounds after the first: the image goes again, and the container
                    client.images.remove(image, force=True)
                promote("1.0.0")
                loads["cold"].append(load1())
                wall, lines = timed([mp, "deploy", repo, "prod", *st])
                figures["cold"].append(wall)
                expect(url, "1.0.0", "cold")
                digest, image = big_container(client, "1.0.0", url)
                show(f"round {r + 1} cold deploy", lines)
                back(promote, mp, repo, st, client, digest)
                client.images.remove(image, force=True)
                loads["pull"].append(load1())
                figures["pull"].append(timed(["docker", "pull", "-q", image])[0])
                print(f"  round {r + 1} docker pull {figures['pull'][-1]:6.2f} s", flush=True)
                loads["curl"].append(load1())
                figures["curl"].append(curl_weights(host, image, tmp / "weights.tar"))
                print(
                    f"  round {r + 1} curl GET of the weight layer {figures['curl'][-1]:6.2f} s", flush=True
                )
                promote("1.0.0")
                loads["warm"].append(load1())
                wall, lines = timed([mp, "deploy", repo, "prod", *st])
                figures["warm"].append(wall)
                expect(url, "1.0.0", "warm")
                show(f"round {r + 1} warm deploy", lines)
                back(promote, mp, repo, st, client, digest)
        finally:
            api.undeploy(t, repo, "prod")
            for img in client.images.list(name=repo):
                with contextlib.suppress(Exception):
                    client.images.remove(img.id, force=True)
    gb = f"{size / 1e9:g} GB"
    print(f"image {image}")
    for k in figures:
        print(f"{k}: {[round(x, 2) for x in figures[k]]} s, 1-min load {[round(x, 1) for x in loads[k]]}")
    med = {k: statistics.median(v) for k, v in figures.items()}
    benchkit.emit(
        f"deploy to ready, {gb} weights, cold (image pulled), median of {rounds}, load "
        f"{max(loads['cold']):.1f}; limit: anchor KServe modelcar 3.2 GB < 10 s (published); "
        "peer docker pull",
        med["cold"],
        ANCHOR_S,
        med["pull"],
    )
    benchkit.emit(f"docker pull of the same image, {gb}, median of {rounds}", med["pull"])
    benchkit.emit(f"curl GET of the weight layer to a file, {gb}, median of {rounds}", med["curl"])
    benchkit.emit(
        f"deploy to ready, {gb} weights, warm (image present), median of {rounds}, load "
        f"{max(loads['warm']):.1f}; limit: anchor KServe modelcar 3.2 GB < 10 s (published)",
        med["warm"],
        ANCHOR_S,
    )


def curl_weights(host: str, image: str, dest: Path) -> float:
    """Seconds `curl` takes to GET the image's largest layer (the weights) from the registry to a file:
    the transfer alone, without the engine's verify and extract."""
    import httpx

    name, digest = image.split("/", 1)[1].split("@")
    accept = "application/vnd.oci.image.manifest.v1+json"
    manifest = httpx.get(f"http://{host}/v2/{name}/manifests/{digest}", headers={"Accept": accept}).json()
    layer = max(manifest["layers"], key=lambda x: x["size"])["digest"]
    wall, _ = timed(["curl", "-sSf", "-o", str(dest), f"http://{host}/v2/{name}/blobs/{layer}"])
    dest.unlink()
    return wall


def expect(url: str, version: str, what: str) -> None:
    got = answered(url)
    if got != version:
        raise SystemExit(f"after the {what} deploy the proxy answered {got}, not {version}")


def show(what: str, lines: list[tuple[float, str]]) -> None:
    for at, line in lines:
        print(f"  {what} +{at:6.2f} s  {line[:150]}", flush=True)


def back(promote, mp: str, repo: str, st: list[str], client, digest: str) -> None:  # type: ignore[no-untyped-def]
    """Traffic back to 0.9.0 and 1.0.0's container removed (so the next deploy of it starts one)."""
    promote("0.9.0")
    timed([mp, "deploy", repo, "prod", *st])
    remove_release(client, digest)


def big_container(client, version: str, url: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(index digest label, image reference) of the running release container serving `version`."""
    for c in client.containers.list(filters={"label": LABEL_DIGEST}):
        ref = c.attrs["Config"]["Image"]
        if "deploy-big" in ref and c.labels.get(LABEL_DIGEST) and _serves(c, version):
            return c.labels[LABEL_DIGEST], ref
    raise SystemExit(f"no running container serves {version} ({url})")


def _serves(container, version: str) -> bool:  # type: ignore[no-untyped-def]
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"] if "=" in e)
    port = env.get("PORT")
    try:
        return (
            port is not None and answered(f"http://127.0.0.1:{port}/v2/models/house-prices/infer") == version
        )
    except Exception:
        return False


def remove_release(client, digest: str) -> None:  # type: ignore[no-untyped-def]
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_DIGEST}={digest}"}):
        c.remove(force=True)


if __name__ == "__main__":
    main()
