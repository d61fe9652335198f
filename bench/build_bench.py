"""Bundle build benchmark (issue 4): 1 GiB (and 2 GiB) of weights, run by hand.

    .venv/bin/python bench/build_bench.py                 # 1 GiB and 2 GiB
    .venv/bin/python bench/build_bench.py --sizes 1 --rounds 3

For each size it times, on the same file, back to back:
  sha256sum       the coreutils tool reading and hashing the file once
  hashlib         one read + sha256 in Python (1 MiB reads): the floor for any first build
  kit-style       what every `kit pack` does, since it keeps no cache: stream the file into a tar layer,
                  hash it and write the blob to a store, from scratch each time
  cold build      `modelpack build --no-image` into an empty store (hash + write the layer blob)
  warm build      the same build again, nothing changed (stat cache: no weight byte read)
Targets: cold within 1.2x of hashlib; warm under 0.3 s and flat as the weights grow.
The page cache holds the file for every tool (it was just written), so all read from memory alike.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelpack import api
from modelpack.oci.layout import LayoutStore

GIB = 1 << 30
CHUNK = 1 << 20
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

PACKFILE = """\
name: bench-build
version: 1.0.0
model:
  paths: [weights.bin]
  format: other
code:
  paths: [handler.py]
  handler: handler:Model
dependencies:
  lockfile: requirements.lock
  python: "3.11"
"""
HANDLER = """\
class Model:
    def load(self, model_dir):
        pass

    def predict(self, inputs):
        return inputs
"""


def make_project(root: Path, size: int) -> Path:
    root.mkdir(parents=True)
    (root / "modelpack.yaml").write_text(PACKFILE)
    (root / "handler.py").write_text(HANDLER)
    (root / "requirements.lock").write_text("numpy==2.4.6\n")
    with open(root / "weights.bin", "wb") as f:
        for _ in range(size // (64 * CHUNK)):
            f.write(os.urandom(64 * CHUNK))
    return root


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def hashlib_once(path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)


def kit_style(path: Path, store: Path) -> None:
    """A tar layer of the file, hashed and written to a blob, with no cache (as each `kit pack` does)."""
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / "blob.tmp"

    class _Hashing:
        def __init__(self, f: object) -> None:
            self.f, self.h = f, hashlib.sha256()

        def write(self, data: bytes) -> int:
            self.h.update(data)
            return self.f.write(data)  # type: ignore[attr-defined,no-any-return]

    with open(tmp, "wb") as raw:
        out = _Hashing(raw)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            tf.add(path, arcname="models/weights.bin")
        raw.flush()
        os.fsync(raw.fileno())
    tmp.rename(store / out.h.hexdigest())


def run(size_gib: int, rounds: int, work: Path) -> dict[str, float]:
    proj = make_project(work / f"proj-{size_gib}", size_gib * GIB)
    weights = proj / "weights.bin"
    results: dict[str, list[float]] = {k: [] for k in ("sha256sum", "hashlib", "kit", "cold", "warm")}
    for r in range(rounds):
        results["sha256sum"].append(
            timed(lambda: subprocess.run(["sha256sum", str(weights)], check=True, capture_output=True))
        )
        results["hashlib"].append(timed(lambda: hashlib_once(weights)))
        kit_dir = work / f"kit-{size_gib}-{r}"
        results["kit"].append(timed(lambda d=kit_dir: kit_style(weights, d)))  # type: ignore[misc]
        shutil.rmtree(kit_dir)
        store = LayoutStore(work / f"store-{size_gib}-{r}")
        results["cold"].append(timed(lambda s=store: api.build(proj, s, environ=EPOCH)))  # type: ignore[misc]
        results["warm"].append(timed(lambda s=store: api.build(proj, s, environ=EPOCH)))  # type: ignore[misc]
        shutil.rmtree(store.root)
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2", help="weights sizes in GiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="runs per size; medians are printed")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="modelpack-build-bench-", dir="/var/tmp") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            m = run(size, args.rounds, Path(tmp))
            rows.append((size, m))
            shutil.rmtree(Path(tmp) / f"proj-{size}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\nmedians of {args.rounds} rounds, seconds")
    head = f"{'weights':>8} {'sha256sum':>10} {'hashlib':>8} {'kit-style':>10} {'cold':>7} {'warm':>7}"
    print(head + "  cold/hashlib  cold/sha256sum  kit/cold  warm")
    for size, m in rows:
        print(
            f"{size:>6}Gi {m['sha256sum']:>10.2f} {m['hashlib']:>8.2f} {m['kit']:>10.2f} {m['cold']:>7.2f}"
            f" {m['warm']:>7.3f}  {m['cold'] / m['hashlib']:>12.2f}x {m['cold'] / m['sha256sum']:>14.2f}x"
            f" {m['kit'] / m['cold']:>8.2f}x  {'<0.3 s: ok' if m['warm'] < 0.3 else '>= 0.3 s: MISSED'}"
        )
    cold_ok = all(m["cold"] <= 1.2 * m["hashlib"] for _, m in rows)
    print(f"\ncold within 1.2x of one hashlib read: {'yes' if cold_ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
