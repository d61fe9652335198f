"""A large sharded model end to end as whole commands (issue 26 item 1), by hand, not in CI.

    .venv/bin/python bench/bigmodel_bench.py                   # 8 GiB: four 2 GiB shards, one round
    .venv/bin/python bench/bigmodel_bench.py --gib 2           # 2 GiB: four 512 MiB shards
    .venv/bin/python bench/bigmodel_bench.py --quick           # 256 MiB, for bench/all

The bench makes the project itself: four safetensors shards (a valid header, random bytes), config.json,
tokenizer.json, a handler and a lockfile. Each figure is one child process, `sync` before it, wall time
from wait4 and peak RSS from GNU time (transfer_bench.timed_run):

  hashlib read         one Python read + sha256 of every shard: cold build's limit is 1.6x of it
  build cold / warm    `modelpack build --no-image` into a fresh store / again with nothing changed
  push                 `modelpack push` of that release to docker-registry on 127.0.0.1, against curl PUT
                       (POST + one monolithic PUT per blob) of the same blobs: limit 1.05x
  pull                 `modelpack pull REF` into a fresh store, against curl GET of the same blobs: 1.3x
  unpack               `modelpack unpack REF DIR` from the registry, against the same curl GET: 1.3x
  peers                `skopeo copy docker://REF oci:DIR` and oras-py's pull of the same release
The last lines are one `BENCH {json}` per figure; the peak RSS rows have the 150 MiB limit.
Not here yet: `docker pull` of the serving image and deploy to ready (they need the image build).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import emit
from registry_bench import Registry, Run
from transfer_bench import blobs_of, curl_get, curl_put, timed_run

MP = str(Path(sys.executable).parent / "modelpack")
PY = sys.executable
NAME = "bench-big"
PACKFILE = """\
name: bench-big
version: 1.0.0
model:
  paths: [{shards}, config.json, tokenizer.json]
  format: safetensors
code:
  paths: [handler.py]
  handler: handler:Model
dependencies:
  lockfile: requirements.lock
  python: "3.11"
"""
HANDLER = "class Model:\n    def predict(self, inputs):\n        return inputs\n"
HASHLIB = """
import hashlib, sys
for p in sys.argv[1:]:
    h = hashlib.sha256()
    with open(p, "rb", buffering=0) as f:
        while b := f.read(4 << 20):
            h.update(b)
"""


def make_shard(path: Path, size: int) -> None:
    """A safetensors file of about `size` bytes: one U8 tensor of random bytes."""
    n = size - 256
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left = n
        block = os.urandom(16 << 20)
        while left:
            f.write(block[: min(left, len(block))])  # repeated blocks: hashing cost is the same
            left -= min(left, len(block))


def make_project(root: Path, total: int) -> list[Path]:
    root.mkdir(parents=True)
    shards = [root / f"model-{i:05d}-of-00004.safetensors" for i in range(1, 5)]
    for s in shards:
        make_shard(s, total // 4)
    (root / "modelpack.yaml").write_text(PACKFILE.format(shards=", ".join(s.name for s in shards)))
    (root / "config.json").write_text(json.dumps({"architectures": ["Bench"], "hidden_size": 4096}))
    (root / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(5000)}}}))
    (root / "handler.py").write_text(HANDLER)
    (root / "requirements.lock").write_text("numpy==2.4.6\n")
    return shards


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=8)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", default="/var/tmp")
    a = ap.parse_args()
    total = (256 << 20) if a.quick else int(a.gib * (1 << 30))
    base = Path(tempfile.mkdtemp(prefix="modelpack-bigmodel-", dir=a.work))
    runs: dict[str, Run] = {}
    env_keep = dict(os.environ)

    def run(name: str, argv: list[str], cwd: Path | None = None, store: Path | None = None) -> Run:
        os.environ.clear()
        os.environ.update({k: v for k, v in env_keep.items() if not k.startswith("MODELPACK_")})
        os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
        if store is not None:
            os.environ["MODELPACK_STORE"] = str(store)
        try:
            r = runs[name] = timed_run(name, argv, cwd)
        finally:
            os.environ.clear()
            os.environ.update(env_keep)
        print(f"{name:28s} {r.seconds:8.2f} s  cpu {r.cpu_seconds:7.2f} s  rss {r.peak_rss_mib:6.0f} MiB", flush=True)
        return r

    try:
        project = base / "project"
        shards = make_project(project, total)
        store = base / "store"
        run("hashlib read", [PY, "-c", HASHLIB, *map(str, shards)])
        run("build cold", [MP, "build", "--no-image"], project, store)
        run("build warm", [MP, "build", "--no-image"], project, store)
        with Registry(base / "registry") as reg:
            ref = f"{reg.host}/bench/big:1.0.0"
            run("push", [MP, "push", ref], project, store)
            pulled_store = base / "pull-store"  # holds real blobs: curl's files below
            run("pull", [MP, "pull", ref], None, pulled_store)
            blobs = [(d, p) for d, p in blobs_of(pulled_store, ref) if p.stat().st_size > 0]
            out = base / "curl-out"
            out.mkdir()
            run("curl GET", curl_get(reg.host, "bench/big", blobs, out))
            shutil.rmtree(out)
            run("curl PUT", curl_put(reg.host, "bench/curl", blobs))
            shutil.rmtree(pulled_store)
            run("unpack", [MP, "unpack", ref, str(base / "unpacked")], None, base / "unpack-store")
            shutil.rmtree(base / "unpacked")
            shutil.rmtree(base / "unpack-store", ignore_errors=True)
            run("skopeo copy", ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}",
                                f"oci:{base / 'sk'}:big"])
            shutil.rmtree(base / "sk")
            oras = "import oras.client, sys; oras.client.OrasClient(hostname=sys.argv[1], insecure=True)" \
                   ".pull(target=sys.argv[2], outdir=sys.argv[3])"
            run("oras-py pull", [PY, "-c", oras, reg.host, ref, str(base / "oras")])
    finally:
        shutil.rmtree(base, ignore_errors=True)

    s = lambda n: runs[n].seconds  # noqa: E731
    size = f"{total / (1 << 30):g} GiB"
    emit(f"big model cold build --no-image, {size} (limit 1.6x hashlib read)", s("build cold"),
         1.6 * s("hashlib read"))
    emit(f"big model warm build, {size}", s("build warm"), 0.3)
    emit(f"big model push, {size} (limit 1.05x curl PUT)", s("push"), 1.05 * s("curl PUT"))
    emit(f"big model pull, {size} (limit 1.3x curl GET; peer skopeo)", s("pull"), 1.3 * s("curl GET"),
         s("skopeo copy"))
    emit(f"big model unpack, {size} (limit 1.3x curl GET; peer oras-py pull)", s("unpack"),
         1.3 * s("curl GET"), s("oras-py pull"))
    for n in ("build cold", "push", "pull", "unpack"):
        emit(f"big model {n} peak RSS, {size}", runs[n].peak_rss_mib, 150, None, unit="MiB")


if __name__ == "__main__":
    main()
