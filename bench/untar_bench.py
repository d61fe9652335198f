"""The tar extractor alone (issue 26 item 4): modelpack's `safe_extract` against `cat` of the same bytes
into one file (the limit) and the stdlib's `tarfile` stream extraction with its `data` filter (the peer).

    .venv/bin/python bench/untar_bench.py                 # a 1 GiB layer, 3 rounds
    .venv/bin/python bench/untar_bench.py --size-mib 256 --rounds 5

The layer is one tar of N MiB (a weights file of random bytes plus 200 small files), read from a file in
1 MiB chunks (a blob as the store or the registry hands it on); each tool runs in a child process of its
own, extracting into a fresh folder, `sync` before each, the order rotated each round. Times are wall,
user and system seconds of the child (wait4), peak RSS its ru_maxrss. The last lines are one `BENCH
{json}` per tool. (A Python loop of `f.read(1 MiB)` + `os.write` is no limit: each fresh 1 MiB bytes
object faults its pages in, 1-2 s of system time per GiB here; `cat` reuses one buffer.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

CHUNK = 1 << 20


def _chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def child(tool: str, tar: str, dest: str) -> None:
    if tool == "modelpack":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from modelpack.oci.untar import safe_extract

        safe_extract(_chunks(tar), dest)
    else:
        with tarfile.open(fileobj=io.BufferedReader(_Raw(_chunks(tar))), mode="r|") as tf:
            tf.extractall(dest, filter="data")


class _Raw(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it, self._buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if not self._buf:
            self._buf = next(self._it, b"")
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def make_layer(path: Path, size: int) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("models/weights.bin")
        info.size = size
        with open("/dev/urandom", "rb") as rnd:
            tf.addfile(info, _Limited(rnd, size))
        for i in range(200):
            data = f"{i}\n".encode() * 100
            small = tarfile.TarInfo(f"code/pkg/m{i:03}.py")
            small.size = len(data)
            tf.addfile(small, io.BytesIO(data))


class _Limited(io.RawIOBase):
    def __init__(self, f: io.BufferedReader, n: int) -> None:
        self._f, self._n = f, n

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        n = self._n if n < 0 else min(n, self._n)
        self._n -= n
        return self._f.read(n)


def run(tool: str, tar: Path, dest: Path) -> dict[str, float]:
    os.sync()
    started = time.perf_counter()
    if tool == "cat":  # the limit: the same bytes into one file, no parsing, no checks
        dest.mkdir()
        with open(dest / "all", "wb") as out:
            proc = subprocess.Popen(["cat", str(tar)], stdout=out)
    else:
        proc = subprocess.Popen([sys.executable, __file__, "_child", tool, str(tar), str(dest)])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{tool} failed ({status})")
    shutil.rmtree(dest)
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "_child":
        child(*args[1:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args(args)
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="untar-bench-") as tmp:
        work = Path(tmp)
        tar = work / "layer.tar"
        make_layer(tar, opts.size_mib << 20)
        results: dict[str, list[dict[str, float]]] = {"cat": [], "modelpack": [], "tarfile": []}
        for n in range(opts.rounds):
            tools = list(results)
            for tool in (
                tools[n % 3 :] + tools[: n % 3]
            ):  # each goes first once: writeback and caches even out
                results[tool].append(run(tool, tar, work / f"out-{tool}-{n}"))
            print(f"round {n + 1}: " + ", ".join(f"{t} {r[-1]['wall']:.2f}s" for t, r in results.items()))
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    head = ("tool", "wall s", "user s", "sys s", "CPU / cat", "peak RSS MiB")
    print("| " + " | ".join(head) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    med = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in results.items()}
    base = med["cat"]["user"] + med["cat"]["sys"]
    for tool, m in med.items():
        cpu = (m["user"] + m["sys"]) / base
        print(f"| {tool:<10} | {m['wall']:>7.2f} | {m['user']:>6.2f} | {m['sys']:>6.2f} | {cpu:>10.2f} | "
              f"{max(r['rss_mib'] for r in results[tool]):>12.0f} |")  # fmt: skip
    for tool, m in med.items():
        print(
            "BENCH "
            + json.dumps({"tool": tool, "size_mib": opts.size_mib, **{k: round(v, 3) for k, v in m.items()}})
        )


if __name__ == "__main__":
    main()
