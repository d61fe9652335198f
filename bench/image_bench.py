"""Serving-image benchmark (issue 5): 1 GiB of weights, build + push, cold and after a one-line code change.

    eval "$(scripts/test-env env)"          # the Docker engine and the base image
    .venv/bin/python bench/image_bench.py
    .venv/bin/python bench/image_bench.py --quick           # 64 MiB of weights, for bench/all

It starts its own loopback registry (`docker-registry` on a free 127.0.0.1 port), pushes the test base
image there from the engine, writes a custom-handler project with 1 GiB of random weights (the handler
ignores them) in a temp dir, and runs, each into its own repository:
  (a) modelpack build + push, daemonless builder (the default)
  (b) modelpack build --builder docker + push
  (c) what Cog/BentoML users do: a plain Dockerfile with COPY of the weights (deps installed from the same
      wheels, offline, so every path gets the same packages), `docker build` + `docker push`
Then it appends one line to handler.py and repeats all three. Bytes uploaded: the client's
CopyResult.bytes_copied for (a) and (b); the registry's storage growth for (c) (docker's own count).
Every path gets the same wheels, downloaded once before the clock starts, so no timing includes PyPI.
Targets: (a) cold at least 5x faster than (c) cold; after the change (a) uploads only KBs in under 2 s;
(a)'s image minus its base within 5% of weights + deps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the test fixtures start the registry and push the base

import benchkit  # noqa: E402  (bench/, beside this script)

from modelpack import api  # noqa: E402
from modelpack.image import wheels  # noqa: E402
from modelpack.image.runtime import runtime_pins  # noqa: E402
from modelpack.image.wheels import select_wheels  # noqa: E402
from modelpack.oci.model import Index, Manifest, parse  # noqa: E402
from modelpack.store.layout import LayoutStore  # noqa: E402
from modelpack.targets import Targets  # noqa: E402
from tests.fixtures.engine import connect_engine  # noqa: E402
from tests.fixtures.registry import RegistryProcess  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
NAME = "bench-image"
USER_PINS = benchkit.USER_PINS
PLAIN_DOCKERFILE = """\
FROM {base}
COPY wheels/ /tmp/wheels/
RUN python3 /tmp/wheels/{pip_wheel}/pip install --no-index --find-links /tmp/wheels --no-deps \\
      --target /opt/deps -r /tmp/wheels/requirements.txt && rm -rf /tmp/wheels
COPY weights.bin /models/weights.bin
COPY handler.py /code/handler.py
ENV PYTHONPATH=/opt/deps:/code
CMD ["python3", "-c", "import handler"]
"""


@dataclass
class Row:
    path: str
    phase: str
    build_s: float
    push_s: float
    uploaded: int

    @property
    def total(self) -> float:
        return self.build_s + self.push_s


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def link_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, copy_function=os.link, dirs_exist_ok=True)


def image_manifest(store: LayoutStore, tag: str) -> Manifest:
    index = parse(store.get_manifest(tag).raw)
    assert isinstance(index, Index)
    image = parse(store.get_manifest(index.manifests[0].digest).raw)
    assert isinstance(image, Manifest)
    return image


def modelpack_path(
    label: str, proj: Path, store: LayoutStore, base: str, dest: str, version: str, **kw: Any
) -> Row:
    build_s, _ = timed(
        lambda: api.build(Targets(store_path=store.root), proj, image=True, base=base, version=version, environ=EPOCH, **kw)
    )
    with Targets(store_path=store.root) as targets:
        push_s, result = timed(lambda: api.push(targets, f"{dest}:{version}", source=f"{NAME}:{version}"))
    return Row(label, version, build_s, push_s, result.copy.bytes_copied)


def plain_path(ctx: Path, registry: RegistryProcess, ref: str, version: str) -> Row:
    env = dict(os.environ)
    build_s, _ = timed(
        lambda: subprocess.run(
            ["docker", "build", "-q", "--network", "host", "-t", f"{ref}:{version}", str(ctx)],
            check=True, capture_output=True, env=env,
        )
    )  # fmt: skip
    before = benchkit.du(registry.storage)
    push_s, _ = timed(
        lambda: subprocess.run(
            ["docker", "push", f"{ref}:{version}"], check=True, capture_output=True, env=env
        ),
    )
    return Row("(c) Dockerfile + docker", version, build_s, push_s, benchkit.du(registry.storage) - before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-mib", type=int, default=GIB // MIB)
    parser.add_argument("--quick", action="store_true", help="64 MiB of weights (bench/all)")
    args = parser.parse_args()
    weights = (64 if args.quick else args.weights_mib) * MIB
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows: list[Row] = []
    sizes: dict[str, tuple[int, int]] = {}
    cleanup: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelpack-image-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        registry = RegistryProcess(root=work / "registry")
        registry.start()
        engine = None
        try:
            engine = connect_engine(registry.host)
            base = engine.base_ref
            requirements = "".join(f"{k}=={v}\n" for k, v in USER_PINS.items())
            proj = benchkit.make_project(work / "proj", NAME, weights, requirements)
            weights_size = (proj / "weights.bin").stat().st_size

            # the same wheels for every path, fetched before any clock starts
            pins = wheels.merge_requirements(dict(USER_PINS), runtime_pins("handler:Model"))
            pip_version = __import__("importlib.metadata").metadata.version("pip")
            shared = work / "wheels"
            target = wheels.TargetPlatform()
            wheels.download_wheels(wheels.requirements_text({**pins, "pip": pip_version}), shared, target)
            stores = {k: LayoutStore(work / f"store-{k}") for k in "ab"}
            for s in stores.values():
                link_tree(shared, s.root / "cache" / "wheels")
            ctx = work / "ctx-c"
            (ctx / "wheels").mkdir(parents=True)
            for p in select_wheels(shared, {**pins, "pip": pip_version}):
                os.link(p, ctx / "wheels" / p.name)
            (ctx / "wheels" / "requirements.txt").write_text(wheels.requirements_text(pins))
            os.link(proj / "weights.bin", ctx / "weights.bin")
            (ctx / "Dockerfile").write_text(
                PLAIN_DOCKERFILE.format(base=base, pip_wheel=f"pip-{pip_version}-py3-none-any.whl")
            )

            reg = registry.host
            cleanup += [f"{reg}/bench/c:1.0.0", f"{reg}/bench/c:1.0.1"]
            cleanup += [f"modelpack/{NAME}:1.0.0", f"modelpack/{NAME}:1.0.1"]
            for version in ("1.0.0", "1.0.1"):
                if version == "1.0.1":  # a one-line code change
                    handler = proj / "handler.py"
                    handler.write_text(handler.read_text() + "# tuned\n")
                shutil.copyfile(proj / "handler.py", ctx / "handler.py")
                a_dest = f"{reg}/bench/a"
                rows.append(
                    modelpack_path("(a) modelpack daemonless", proj, stores["a"], base, a_dest, version)
                )
                rows.append(
                    modelpack_path(
                        "(b) modelpack --builder docker", proj, stores["b"], base, f"{reg}/bench/b", version,
                        builder="docker", docker=engine.client,
                    )
                )  # fmt: skip
                rows.append(plain_path(ctx, registry, f"{reg}/bench/c", version))

            # image size minus base, against weights + deps (the deps tree as installed)
            deps_trees = list((stores["a"].root / "cache" / "deps").iterdir())
            deps_size = benchkit.du(deps_trees[0])
            for key, store in stores.items():
                m = image_manifest(store, f"{NAME}:1.0.0")
                # base layers are referenced, never in the store
                base_layers = len(m.layers) - len([d for d in m.layers if store.has_blob(d.digest)])
                sizes[key] = (sum(d.size for d in m.layers[base_layers:]), weights_size + deps_size)
            client = engine.client
            c_size = client.images.get(f"{reg}/bench/c:1.0.0").attrs["Size"]
            base_size = client.images.get(base).attrs["Size"]
            sizes["c"] = (c_size - base_size, weights_size + deps_size)
        finally:
            if engine is not None:
                for tag in cleanup:
                    with contextlib.suppress(Exception):  # not built (a failed run) or already gone
                        engine.client.images.remove(tag)
            registry.stop()
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    report(rows, sizes, weights)
    return 0


def report(rows: list[Row], sizes: dict[str, tuple[int, int]], weights: int) -> None:
    print(f"{'path':<32} {'release':<8} {'build s':>8} {'push s':>7} {'total s':>8} {'uploaded':>15}")
    for r in rows:
        times = f"{r.build_s:>8.2f} {r.push_s:>7.2f} {r.total:>8.2f}"
        print(f"{r.path:<32} {r.phase:<8} {times} {r.uploaded:>15,}")
    by = {(r.path[:3], r.phase): r for r in rows}
    a0, b0, c0 = by[("(a)", "1.0.0")], by[("(b)", "1.0.0")], by[("(c)", "1.0.0")]
    a1, b1, c1 = by[("(a)", "1.0.1")], by[("(b)", "1.0.1")], by[("(c)", "1.0.1")]
    print()
    print(
        f"cold, (c) / (a): {c0.total / a0.total:.1f}x (target >= 5x); (c) / (b): {c0.total / b0.total:.1f}x"
    )
    print(
        f"code change: (a) {a1.total:.2f} s, {a1.uploaded:,} bytes (target < 2 s, KBs);"
        f" (b) {b1.total:.2f} s, {b1.uploaded:,} bytes; (c) {c1.total:.2f} s, {c1.uploaded:,} bytes"
    )
    for key, (size, expected) in sizes.items():
        ratio = size / expected
        print(f"({key}) image minus base: {size:,} bytes = {ratio:.3f} x weights + deps ({expected:,})")
    w = f"{weights // MIB} MiB weights (peer: Dockerfile + docker)"
    benchkit.emit(f"image build+push cold, daemonless, {w}", a0.total, c0.total / 5, c0.total)
    benchkit.emit(f"image build+push cold, --builder docker, {w}", b0.total, None, c0.total)
    benchkit.emit(f"image build+push after a code change, {w}", a1.total, 2.0, c1.total)
    size, expected = sizes["a"]
    benchkit.emit(f"image minus base, daemonless, {w}", size, expected * 1.05, sizes["c"][0], unit="B")


if __name__ == "__main__":
    sys.exit(main())
