"""Dataset push and pull as whole commands beside DVC (issue 26 item 5).

    .venv/bin/python bench/dataset_bench.py --quick        # 8 x 8 MiB, 1 round
    .venv/bin/python bench/dataset_bench.py                # 8 x 128 MiB (1 GiB), medians of 3

The bench writes N CSV-like files (a header and rows of numbers and a class label), then times, each a
child process (wall time, peak RSS from wait4):

  sha256sum            `sha256sum` of every file: the limit's base (cold push <= 1.5x of it).
  push, cold           `modelpack dataset push DIR HOST/bench/data:vK` with a fresh store (nothing cached,
                       nothing in the registry), against DVC 3.67 `dvc add DIR` + `dvc push` to a local
                       remote in a fresh repository.
  push, one changed    one file rewritten (new rows), pushed again as a new version: modelpack's limit is
                       `sha256sum` of that one file + 0.5 s; DVC `dvc add` + `dvc push` again.
  pull                 `modelpack dataset pull REF DIR` into an empty folder (fresh store) against
                       `dvc pull` into a clone with an empty cache.

DVC runs in its own venv under /var/tmp (`pip install dvc==3.67.*`, on first use). The registry is
docker-registry on 127.0.0.1 (registry_bench.Registry). Every run is preceded by `sync`, so no tool pays
for the writeback of what the one before wrote. The last lines are one `BENCH {json}` per figure: wall time, and CPU time (the
command's own user + system; the registry's is not in it) for the two push targets.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import emit
from registry_bench import Registry, Run, measured

MP = str(Path(sys.executable).parent / "modelpack")
DVC_VENV = Path("/var/tmp/modelpack-bench-dvc")
DVC = str(DVC_VENV / "bin" / "dvc")
LABELS = ["cat", "dog", "bird", "fish"]


def ensure_dvc() -> None:
    if not os.access(DVC, os.X_OK):
        subprocess.run([sys.executable, "-m", "venv", str(DVC_VENV)], check=True)
        subprocess.run([str(DVC_VENV / "bin" / "pip"), "install", "-q", "dvc==3.67.*"], check=True)


def write_csv(path: Path, size: int, seed: int) -> None:
    """`size` bytes (about) of `id,x1..x4,label` rows; rows made from a pool so writing is fast."""
    rng = random.Random(seed)
    pool = [
        f"{rng.randrange(10**9)},{rng.random():.6f},{rng.random():.6f},{rng.random():.6f},"
        f"{rng.random():.6f},{rng.choice(LABELS)}\n".encode()
        for _ in range(4096)
    ]
    block = b"".join(rng.sample(pool, len(pool)))
    with open(path, "wb") as f:
        f.write(b"id,x1,x2,x3,x4,label\n")
        left = size
        while left > 0:
            f.write(block)
            left -= len(block)


def timed(tool: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Run:
    os.sync()
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        run, _ = measured(tool, argv, cwd)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return run


def seq(*steps: Callable[[], Run]) -> Run:
    """Several commands as one figure: times and CPU add up, peak RSS is the largest."""
    runs = [s() for s in steps]
    return Run(
        runs[0].tool,
        sum(r.seconds for r in runs),
        max(r.peak_rss_mib for r in runs),
        None,
        sum(r.cpu_seconds for r in runs),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--file-mib", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default="/var/tmp")
    a = ap.parse_args()
    if a.quick:
        a.file_mib, a.rounds = 8, 1
    ensure_dvc()
    base = Path(tempfile.mkdtemp(prefix="modelpack-dataset-bench-", dir=a.work))
    rows: dict[str, list[Run]] = {}

    def add(name: str, run: Run) -> None:
        rows.setdefault(name, []).append(run)
        print(f"{name:42s} {run.seconds:8.2f} s  cpu {run.cpu_seconds:6.2f} s  rss {run.peak_rss_mib:6.0f} MiB",
              flush=True)

    try:
        data = base / "data"
        data.mkdir()
        size = a.file_mib << 20
        for i in range(a.files):
            write_csv(data / f"part-{i}.csv", size, i)
        files = sorted(str(p) for p in data.iterdir())
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
        env["SOURCE_DATE_EPOCH"] = "1700000000"
        with Registry(base / "registry") as reg:
            for r in range(a.rounds):
                write_csv(data / "part-0.csv", size, 1000 + r * 2)  # each round pushes new content
                os.utime(data / "part-0.csv", ns=(10**18, 10**18))
                add("sha256sum", timed("sha256sum", ["sha256sum", *files], env))
                add("sha256sum one file", timed("sha256sum", ["sha256sum", files[0]], env))
                mp_env = {**env, "MODELPACK_STORE": str(base / f"store-{r}")}
                ref = f"{reg.host}/bench/data"
                add("modelpack push cold", timed("modelpack", [MP, "dataset", "push", str(data), f"{ref}:c{r}"], mp_env))
                write_csv(data / "part-0.csv", size, 1001 + r * 2)
                os.utime(data / "part-0.csv", ns=(10**18, 10**18))
                add("modelpack push one changed",
                    timed("modelpack", [MP, "dataset", "push", str(data), f"{ref}:d{r}"], mp_env))
                pulled = base / f"pulled-{r}"
                pull_env = {**env, "MODELPACK_STORE": str(base / f"pull-store-{r}")}
                add("modelpack pull", timed("modelpack", [MP, "dataset", "pull", f"{ref}:d{r}", str(pulled)], pull_env))
                shutil.rmtree(pulled, ignore_errors=True)
                shutil.rmtree(base / f"store-{r}", ignore_errors=True)
                shutil.rmtree(base / f"pull-store-{r}", ignore_errors=True)

                # DVC: the same files in a fresh git+dvc repository, a local directory as the remote
                write_csv(data / "part-0.csv", size, 1000 + r * 2)
                os.utime(data / "part-0.csv", ns=(10**18, 10**18))
                repo = base / f"dvc-{r}"
                repo.mkdir()
                subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
                subprocess.run([DVC, "init", "-q"], cwd=repo, check=True)
                subprocess.run([DVC, "remote", "add", "-d", "local", str(base / f"dvc-remote-{r}")], cwd=repo,
                               check=True, stdout=subprocess.DEVNULL)
                os.rename(data, repo / "data")
                try:
                    add("dvc add + push cold", seq(lambda: timed("dvc", [DVC, "add", "-q", "data"], env, repo),
                                                   lambda: timed("dvc", [DVC, "push", "-q"], env, repo)))
                    write_csv(repo / "data" / "part-0.csv", size, 1001 + r * 2)
                    add("dvc add + push one changed",
                        seq(lambda: timed("dvc", [DVC, "add", "-q", "data"], env, repo),
                            lambda: timed("dvc", [DVC, "push", "-q"], env, repo)))
                    clone = base / f"dvc-clone-{r}"
                    clone.mkdir()
                    for name in (".dvc", "data.dvc"):
                        src = repo / name
                        if src.is_dir():
                            shutil.copytree(src, clone / name, ignore=shutil.ignore_patterns("cache", "tmp"))
                        else:
                            shutil.copy(src, clone / name)
                    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
                    add("dvc pull", timed("dvc", [DVC, "pull", "-q"], env, clone))
                    shutil.rmtree(clone)
                finally:
                    os.rename(repo / "data", data)
                shutil.rmtree(repo)
                shutil.rmtree(base / f"dvc-remote-{r}", ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def med(name: str) -> float:
        return statistics.median(r.seconds for r in rows[name])

    def cpu(name: str) -> float:
        return statistics.median(r.cpu_seconds for r in rows[name])

    def rss(name: str) -> float:
        return max(r.peak_rss_mib for r in rows[name])

    total = a.files * a.file_mib
    print(f"\n{a.files} x {a.file_mib} MiB CSV, medians of {a.rounds}; peak RSS (MiB): "
          + ", ".join(f"{n} {rss(n):.0f}" for n in rows))
    emit(f"dataset push cold, {total} MiB (limit 1.5x sha256sum; peer DVC add+push)",
         med("modelpack push cold"), 1.5 * med("sha256sum"), med("dvc add + push cold"))
    emit(f"dataset push, one of {a.files} files changed (limit its sha256sum + 0.5 s; peer DVC)",
         med("modelpack push one changed"), med("sha256sum one file") + 0.5, med("dvc add + push one changed"))
    # CPU (user + system of the command itself; not the registry's): what a loaded machine cannot blur
    emit(f"dataset push cold, {total} MiB, CPU s (limit 1.5x sha256sum's; peer DVC)",
         cpu("modelpack push cold"), 1.5 * cpu("sha256sum"), cpu("dvc add + push cold"))
    emit(f"dataset push, one of {a.files} changed, CPU s (limit its sha256sum's + 0.5 s; peer DVC)",
         cpu("modelpack push one changed"), cpu("sha256sum one file") + 0.5, cpu("dvc add + push one changed"))
    emit(f"dataset pull, {total} MiB (peer DVC pull)", med("modelpack pull"), None, med("dvc pull"))
    emit(f"dataset push cold {total} MiB peak RSS", rss("modelpack push cold"), 150, rss("dvc add + push cold"),
         unit="MiB")


if __name__ == "__main__":
    main()
