"""Serving-image size benchmark (issue 13 item 5): a custom numpy handler's image minus its base, against
its limit, weights + the user's deps (as installed) + 10 MB.

    eval "$(scripts/test-env env)"          # the Docker engine and the base image
    .venv/bin/python bench/image_size_bench.py [--weights-mb 64]
    .venv/bin/python bench/image_size_bench.py --quick      # 8 MB of weights, for bench/all

It starts its own loopback registry, pushes the test base image there from the engine, writes a custom
numpy-handler project with random weights in a temp dir, builds it daemonless (the default builder) and
reads the image manifest: our layers (deps, runtime, weights, code, serving config) against the limit.
It also prints what the same deps and runtime would weigh as uncompressed tars with the old, unsplit
runtime lock (onnxruntime, protobuf, flatbuffers, packaging installed for every handler): the peer here is
modelpack's own previous image. Wheels come from pip's usual index, once, before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the test fixtures start the registry and push the base

import benchkit  # noqa: E402  (bench/, beside this script)

from modelpack import api  # noqa: E402
from modelpack.image import wheels  # noqa: E402
from modelpack.image.runtime import runtime_entries, runtime_pins  # noqa: E402
from modelpack.oci.model import Index, Manifest, parse  # noqa: E402
from modelpack.oci.tar import entries_from, tar_size  # noqa: E402
from modelpack.store.layout import LayoutStore  # noqa: E402
from modelpack.targets import Targets  # noqa: E402
from tests.fixtures.engine import connect_engine  # noqa: E402
from tests.fixtures.registry import RegistryProcess  # noqa: E402

MB = 1_000_000
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
NAME = "bench-size"
USER_PINS = benchkit.USER_PINS


def installed(store: LayoutStore, pins: dict[str, str], dest: Path) -> int:
    """Bytes of `pins` installed from the store's wheel cache (what the image's deps tree would hold)."""
    cache = store.root / "cache" / "wheels"
    text = wheels.requirements_text(pins)
    wheels.download_wheels(text, cache, wheels.TargetPlatform())
    wheels.install_tree(cache, text, dest, wheels.TargetPlatform())
    return benchkit.du(dest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-mb", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="8 MB of weights (bench/all)")
    args = parser.parse_args()
    if args.quick:
        args.weights_mb = 8
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="modelpack-size-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        registry = RegistryProcess(root=work / "registry")
        registry.start()
        try:
            engine = connect_engine(registry.host)
            requirements = wheels.requirements_text(USER_PINS)
            proj = benchkit.make_project(work / "proj", NAME, args.weights_mb * MB, requirements)
            store = LayoutStore(work / "store")
            user_deps = installed(store, USER_PINS, work / "user-deps")
            t0 = time.perf_counter()
            built = api.build(Targets(store_path=store.root), proj, image=True, base=engine.base_ref, environ=EPOCH)
            build_s = time.perf_counter() - t0
            assert built.image is not None
            index = parse(store.get_manifest(built.tag).raw)
            assert isinstance(index, Index)
            image = parse(store.get_manifest(index.manifests[0].digest).raw)
            assert isinstance(image, Manifest)
            ours = image.layers[len(built.image.base.layers) :]
            size = sum(d.size for d in ours)
            weights = (proj / "weights.bin").stat().st_size
            # the previous image: the unsplit runtime lock, deps and runtime as uncompressed tars
            old_pins = wheels.merge_requirements(dict(USER_PINS), runtime_pins("onnx"))
            old_tree = work / "old-deps"
            installed(store, old_pins, old_tree)
            old_deps_tar = tar_size(entries_from([(old_tree, "opt/modelpack/deps")]))
        finally:
            registry.stop()
    limit = weights + user_deps + 10 * MB
    rest = sum(d.size for d in ours[2:])
    old_size = old_deps_tar + tar_size(runtime_entries()) + rest
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(f"weights {weights:,} B, user deps (numpy, installed) {user_deps:,} B; build {build_s:.1f} s")
    print(f"deps layer (gzip) {ours[0].size:,} B; runtime layer (gzip) {ours[1].size:,} B")
    print(f"{'operation':<36} {'modelpack':>14} {'limit':>14} {'peer':>14} {'ratio':>7}")
    print(
        f"{'custom-handler image minus base':<36} {size:>14,} {limit:>14,} {old_size:>14,} "
        f"{size / limit:>7.3f}"
    )
    verdict = "met" if size <= limit else "MISSED"
    print(f"target image minus base <= weights + user deps + 10 MB: {verdict}")
    print(f"vs the previous image (unsplit lock, uncompressed deps tar): {old_size / size:.1f}x smaller")
    what = f"image minus base, custom handler, {weights // MB} MB weights (peer: the unsplit image)"
    benchkit.emit(what, size, limit, old_size, unit="B")
    return 0  # measured; a missed target is the verdict above and the BENCH row, not a crash


if __name__ == "__main__":
    sys.exit(main())
