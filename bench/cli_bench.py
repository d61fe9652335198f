"""CLI start and the incident commands as whole processes, against their limits (issue 13 item 4).

Run by hand (not a test):

    .venv/bin/python bench/cli_bench.py [--rounds 7]
    .venv/bin/python bench/cli_bench.py --quick      # 3 rounds, for bench/all

It starts its own `docker-registry` (distribution 2.8) on a free 127.0.0.1 port, builds the iris example
(bundle only) into a temp store, pushes it as 1.0.0 and 1.0.1, promotes both to prod (forced: no engine
needed), then times each command as a user runs it (median of --rounds, whole process) and prints the
ratio to its limit and to the peer measured in the same run:

    modelpack --version            limit  80 ms   peer: python -c pass
    modelpack rollback --help      limit  80 ms   peer: python -c pass
    modelpack inspect REF          limit 250 ms   peer: skopeo inspect --raw (if installed)
    modelpack rollback REPO prod   limit 300 ms   peer: skopeo copy of the tag (if installed)

Peak RSS of each child comes from os.wait4.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchkit  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
MODELPACK = Path(sys.executable).parent / "modelpack"
REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of `cmd`; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    RUNS.append((cmd, elapsed, usage.ru_utime + usage.ru_stime))
    return elapsed, usage.ru_maxrss


# Every timed run: (arguments, wall s, CPU s of the process). On a loaded machine the minima and the CPU
# time say what the process costs; the medians say what a user waited.
RUNS: list[tuple[list[str], float, float]] = []


def median(cmd: list[str], env: dict[str, str], rounds: int) -> tuple[float, int]:
    runs = [timed(cmd, env) for _ in range(rounds)]
    return statistics.median(t for t, _ in runs), max(r for _, r in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 rounds (bench/all)")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 3
    work = Path(tempfile.mkdtemp(prefix="cli-bench-"))
    port = free_port()
    (work / "config.yml").write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{work / 'registry'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    registry = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(work / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Bytecode as an installed package has it (pip compiles at install): without this, a shell with
    # PYTHONDONTWRITEBYTECODE=1 and an uncompiled venv (this machine's) compiles every module every run.
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPYCACHEPREFIX": str(work / "pycache"),
        "MODELPACK_STORE": str(work / "store"),
        "SOURCE_DATE_EPOCH": "1700000000",
        "MODELPACK_ACTOR": "bench",
        "DOCKER_CONFIG": str(work / "docker"),
    }
    repo = f"127.0.0.1:{port}/bench/iris"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        for v in ("1.0.0", "1.0.1"):
            for step in (
                ["build", str(ROOT / "examples" / "iris-onnx"), "--no-image", "--version", v],
                ["push", f"{repo}:{v}", "--from", f"iris-onnx:{v}"],
                ["promote", f"{repo}:{v}", "prod", "--force", "--reason", "bench"],
            ):
                subprocess.run([str(MODELPACK), "-q", *step], env=env, check=True, stdout=subprocess.DEVNULL)
        py = median([sys.executable, "-c", "pass"], env, args.rounds)
        skopeo = shutil.which("skopeo")
        rows: list[tuple[str, tuple[float, int], float, str, tuple[float, int] | None]] = []
        rows.append(
            (
                "modelpack --version",
                median([str(MODELPACK), "--version"], env, args.rounds),
                0.080,
                "python -c pass",
                py,
            )
        )
        rows.append(
            (
                "modelpack rollback --help",
                median([str(MODELPACK), "rollback", "--help"], env, args.rounds),
                0.080,
                "python -c pass",
                py,
            )
        )
        peer_inspect = (
            median(
                [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:1.0.1"], env, args.rounds
            )
            if skopeo
            else None
        )
        rows.append(
            (
                "modelpack inspect REF",
                median([str(MODELPACK), "inspect", f"{repo}:1.0.1"], env, args.rounds),
                0.250,
                "skopeo inspect --raw",
                peer_inspect,
            )
        )
        # rollback alternates prod between the two releases: each run is a real move with its event
        back = [str(MODELPACK), "rollback", repo, "prod", "1.0.0"]
        forth = [str(MODELPACK), "rollback", repo, "prod", "1.0.1"]
        moves = [timed(back if i % 2 == 0 else forth, env) for i in range(args.rounds)]
        roll = (statistics.median(t for t, _ in moves), max(r for _, r in moves))
        peer_copy = (
            median(
                [
                    skopeo,
                    "copy",
                    "--all",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"docker://{repo}:1.0.0",
                    f"docker://{repo}:skopeo-prod",
                ],
                env,
                args.rounds,
            )
            if skopeo
            else None
        )
        rows.append(("modelpack rollback REPO prod", roll, 0.300, "skopeo copy (a retag)", peer_copy))
        matches: list[tuple[str, Callable[[list[str]], bool]]] = [
            ("modelpack --version", lambda a: a == ["--version"]),
            ("modelpack rollback --help", lambda a: a[-1:] == ["--help"]),
            ("modelpack inspect REF", lambda a: a[:1] == ["inspect"]),
            ("modelpack rollback REPO prod", lambda a: a[:1] == ["rollback"] and "--help" not in a),
        ]
        for label, match in matches:
            runs = [(w, c) for cmd, w, c in RUNS if cmd[0] == str(MODELPACK) and match(cmd[1:])]
            wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
            print(f"{label:32} min wall {wall:.3f} s, min CPU {cpu:.3f} s (of {len(runs)} runs)")
        print(
            f"{'operation':32} {'modelpack':>10} {'limit':>8} {'ratio':>6}  {'peer':24} {'peer s':>8}  RSS MiB"
        )
        for name, (secs, rss), limit, peer_name, peer in rows:
            peer_s = f"{peer[0]:.3f}" if peer else "-"
            print(
                f"{name:32} {secs:10.3f} {limit:8.3f} {secs / limit:6.2f}  {peer_name:24} {peer_s:>8}  "
                f"{rss / 1024:.0f}"
            )
        print(f"load average: {os.getloadavg()}")
        for name, (secs, _rss), limit, peer_name, peer in rows:
            benchkit.emit(f"{name} (peer: {peer_name})", secs, limit, peer[0] if peer else None)
    finally:
        registry.terminate()
        registry.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
