"""Runtime benchmark: modelpack's serving runtime vs MLServer 1.7 on the same iris model, V2 REST, by wrk;
what its metrics and request log cost; what a second worker gives on a CPU-bound model.

Run by hand (needs `wrk` from Debian, installed by `scripts/test-env install`, which this script runs when
wrk is missing and it may; and network to PyPI for the MLServer venv on first use):

    .venv/bin/python bench/serve_bench.py                 # 16 connections, 15 s per server
    .venv/bin/python bench/serve_bench.py --duration 5 --skip-mlserver
    .venv/bin/python bench/serve_bench.py --quick          # 3 s per server, for bench/all

The servers, back to back in each round:

    iris, observed        metrics and request log on (the default), stdout to a file, 1 worker
    iris, quiet           --no-metrics --no-request-log, 1 worker: the peer of the cost row (<= 5 %)
    iris, observed, N     N workers = this machine's CPUs (wrk shares them: a view, no target)
    matmul, 1 / 2 workers a CPU-bound ONNX model (ten 1024x1024 MatMuls a request, onnx_threads=1, so a
                          worker is one core): 2 workers must give >= 1.7x the throughput of 1
    MLServer              1.7.1 (mlserver-sklearn) on the iris model: the observed runtime must do >= 10x

then quiet and observed again (A B ... B A, medians of both: load drifting during a round cancels). Beside
throughput each server's CPU time a request is measured (its process tree's utime + stime over the wrk
run / requests): on a machine busy with other work, throughput follows the scheduler's share (MLServer's
processes outnumber ours), CPU a request much less.

One LogisticRegression is fitted on iris, saved as model.joblib for MLServer (mlserver-sklearn) and as ONNX
(skl2onnx, zipmap off) for modelpack. Both get the same one-row V2 request and return the predicted label
(modelpack is asked for the `label` output only, MLServer's sklearn runtime returns `predict` by default).
MLServer is installed into its own venv (default /tmp/mlserver-venv), never into the project's. Every
server listens on 127.0.0.1 only. Peak RSS is the largest sampled sum over the server's process tree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import benchkit  # bench/, beside this script
import httpx

REPO = Path(__file__).resolve().parent.parent
ROW = [[6.4, 3.2, 4.5, 1.5]]
# uvloop 0.22+ breaks MLServer 1.7.1's inference-pool workers ("There is no current event loop").
MLSERVER_PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_rss_mib: float
    cpu_us: float = 0.0  # the server tree's CPU time per request: what load elsewhere on the box moves least


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_wrk() -> str:
    """wrk's path; installed with the test environment's Debian packages when missing (as root), else
    named in the error."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run([str(REPO / "scripts" / "test-env"), "install"], check=False)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "serve_bench: wrk (the HTTP load generator) is not installed: run scripts/test-env install "
            "as root, or apt-get install wrk"
        )
    return found


def make_matmul(path: Path, size: int = 1024, layers: int = 10) -> None:
    """A CPU-bound model: `layers` MatMuls by one random size x size matrix, tanh between them."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = (np.random.default_rng(0).standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    nodes, previous = [], "input"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]))
        previous = f"t{i}"
    nodes.append(helper.make_node("ReduceSum", [previous], ["output"], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "matmul",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def make_models(root: Path) -> None:
    import joblib
    import numpy as np
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(x.astype(np.float32), y)
    (root / "models").mkdir(parents=True)
    joblib.dump(clf, root / "model.joblib")
    onx = to_onnx(
        clf, initial_types=[("input", FloatTensorType([None, 4]))], options={id(clf): {"zipmap": False}}
    )
    (root / "models" / "iris.onnx").write_bytes(onx.SerializeToString())
    make_matmul(root / "models" / "matmul.onnx")


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total


@contextmanager
def running(cmd: list[str], env: dict[str, str], cwd: Path, ready_url: str, log: Path) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{cmd[0]} exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{ready_url} not ready after 180 s; see {log}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        # The server's own session: stop it and the worker processes it started, nothing else.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wrk(
    url: str, body: str, duration: int, connections: int, workdir: Path
) -> tuple[float, float, float, int]:
    script = workdir / "post.lua"
    lua = f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
    script.write_text(lua + 'wrk.headers["Content-Type"] = "application/json"\n')
    cmd = [ensure_wrk(), "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    return rps, _latency(out, "50%"), _latency(out, "99%"), errors


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def measure(name: str, pid: int, url: str, body: str, args: argparse.Namespace, workdir: Path) -> Result:
    check = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
    if check.status_code != 200:
        raise SystemExit(f"{name}: {check.status_code} {check.text}")
    wrk(url, body, 2, args.connections, workdir)  # warm-up
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kib(pid))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample)
    sampler.start()
    cpu_before = tree_cpu_s(pid)
    try:
        rps, p50, p99, errors = wrk(url, body, args.duration, args.connections, workdir)
    finally:
        cpu = tree_cpu_s(pid) - cpu_before
        stop.set()
        sampler.join()
    return Result(name, rps, p50, p99, errors, peak / 1024, cpu / (rps * args.duration) * 1e6)


IRIS_BODY = json.dumps({
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW}],
    "outputs": [{"name": "label"}],
})  # fmt: skip
MATMUL_BODY = json.dumps({
    "inputs": [{"name": "input", "shape": [1, 1024], "datatype": "FP32", "data": [[0.01] * 1024]}],
})  # fmt: skip


def modelpack_server(
    root: Path,
    label: str,
    *,
    model: str = "iris",
    workers: int = 1,
    observed: bool = True,
    inference: str = "inline",
    onnx_threads: int = 0,
) -> Callable[[argparse.Namespace, Path], Result]:
    def run(args: argparse.Namespace, workdir: Path) -> Result:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(port)}
        cmd = [
            sys.executable, "-m", "modelpack.serve", "--host", "127.0.0.1", "--name", model,
            "--model", f"{model}.onnx", "--model-dir", str(root / "models"), "--inference", inference,
            "--onnx-threads", str(onnx_threads), "--log-level", "warning", "--workers", str(workers),
        ]  # fmt: skip
        if not observed:
            cmd += ["--no-metrics", "--no-request-log"]
        body = IRIS_BODY if model == "iris" else MATMUL_BODY
        base = f"http://127.0.0.1:{port}"
        log = workdir / f"modelpack-{label.replace(' ', '_').replace(',', '')}.log"
        with running(cmd, env, root, f"{base}/v2/health/ready", log) as pid:
            return measure(f"modelpack {label}", pid, f"{base}/v2/models/{model}/infer", body, args, workdir)

    return run


def ensure_mlserver(venv: Path) -> Path:
    binary = venv / "bin" / "mlserver"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *MLSERVER_PINS], check=True)
    return binary


def mlserver(root: Path, venv: Path) -> Callable[[argparse.Namespace, Path], Result]:
    def run(args: argparse.Namespace, workdir: Path) -> Result:
        binary = ensure_mlserver(venv)
        port = free_port()
        model_dir = root / "mlserver"
        (model_dir / "iris").mkdir(parents=True, exist_ok=True)
        (model_dir / "iris" / "model.joblib").write_bytes((root / "model.joblib").read_bytes())
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "metrics_endpoint": None,
        }
        (model_dir / "settings.json").write_text(json.dumps(settings))
        model_settings = {
            "name": "iris",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }
        (model_dir / "iris" / "model-settings.json").write_text(json.dumps(model_settings))
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW}]})
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cmd = [str(binary), "start", str(model_dir)]
        with running(cmd, env, model_dir, f"{base}/v2/models/iris/ready", workdir / "mlserver.log") as pid:
            return measure(
                "MLServer 1.7.1 (sklearn)", pid, f"{base}/v2/models/iris/infer", body, args, workdir
            )

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mlserver-venv", type=Path, default=Path("/tmp/mlserver-venv"))
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="repeat all servers; report medians")
    parser.add_argument("--thread", action="store_true", help='also iris with inference: "thread"')
    parser.add_argument("--quick", action="store_true", help="3 s per server (bench/all)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 3, 1
    ensure_wrk()
    root = Path(tempfile.mkdtemp(prefix="serve-bench-"))  # kept: the servers' logs are in it
    make_models(root)
    cpus = len(os.sched_getaffinity(0))
    runs = [
        modelpack_server(root, OBSERVED),
        modelpack_server(root, QUIET, observed=False),
        modelpack_server(root, f"iris, observed, {cpus} workers", workers=cpus),
        modelpack_server(root, MATMUL_1, model="matmul", onnx_threads=1),
        modelpack_server(root, MATMUL_2, model="matmul", onnx_threads=1, workers=2),
    ]
    if args.thread:
        runs.append(modelpack_server(root, "iris, observed, inference thread", inference="thread"))
    if not args.skip_mlserver:
        runs.append(mlserver(root, args.mlserver_venv))
    load_before = os.getloadavg()[0]
    rounds = []
    for number in range(1, args.rounds + 1):
        # servers back to back within each round; the pair whose difference is a target runs again at the
        # end in the other order (A B ... B A), so a drift in the machine's load during the round cancels
        rounds.append([run(args, root) for run in [*runs, runs[1], runs[0]]])
        if args.rounds > 1:
            report(f"round {number}", median([rounds[-1]]))
    load_after = os.getloadavg()[0]
    print(f"\nlogs and models in {root}")
    print(
        f"{args.connections} connections, {args.duration} s each, wrk -t2, loopback, one-row iris request; "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before, {load_after:.1f} after"
    )
    results = median(rounds)
    report(f"median of {args.rounds} round(s)" if args.rounds > 1 else "results", results)
    emit(results, args.connections)


OBSERVED = "iris, observed"
QUIET = "iris, quiet"
MATMUL_1 = "matmul, 1 worker"
MATMUL_2 = "matmul, 2 workers"


def emit(results: list[Result], connections: int) -> None:
    """BENCH rows in seconds a request (1 / throughput) and p99:
    - the observed runtime against MLServer: limit a tenth of MLServer's time a request (>= 10x its
      throughput), p99 a quarter of MLServer's;
    - metrics + request log: limit 1.05x the quiet runtime's time a request (they cost <= 5 %);
    - 2 workers on the CPU-bound model: limit 1 worker's time / 1.7 (>= 1.7x the throughput);
    - the other runs against MLServer, without a limit."""
    by_name = {r.name.removeprefix("modelpack "): r for r in results}
    peer = next((r for r in results if r.name.startswith("MLServer")), None)
    peer_request = 1 / peer.rps if peer else None
    peer_p99 = peer.p99_ms / 1000 if peer else None
    observed, quiet = by_name[OBSERVED], by_name[QUIET]
    benchkit.emit(f"serve {OBSERVED}: s per request, {connections} conns (peer: MLServer)", 1 / observed.rps,
                  peer_request / 10 if peer_request else None, peer_request)  # fmt: skip
    benchkit.emit(f"serve {OBSERVED}: p99, {connections} conns (peer: MLServer)", observed.p99_ms / 1000,
                  peer_p99 / 4 if peer_p99 else None, peer_p99)  # fmt: skip
    if peer is not None:  # MLServer's processes outnumber ours: on a busy machine they get more of the CPU
        benchkit.emit(f"serve {OBSERVED}: server CPU s per request (peer: MLServer)", observed.cpu_us / 1e6,
                      peer.cpu_us / 1e7, peer.cpu_us / 1e6)  # fmt: skip
    benchkit.emit("serve metrics + request log: s per request (peer: both off)", 1 / observed.rps,
                  1.05 / quiet.rps, 1 / quiet.rps)  # fmt: skip
    # The same cost as server CPU a request: throughput moves with whatever else runs on the machine,
    # CPU a request much less (the quiet-machine throughput of a CPU-bound server is its inverse).
    benchkit.emit("serve metrics + request log: server CPU s per request (peer: both off)",
                  observed.cpu_us / 1e6, 1.05 * quiet.cpu_us / 1e6, quiet.cpu_us / 1e6)  # fmt: skip
    one, two = by_name[MATMUL_1], by_name[MATMUL_2]
    benchkit.emit("serve 2 workers, CPU-bound model: s per request (peer: 1 worker)", 1 / two.rps,
                  1 / one.rps / 1.7, 1 / one.rps)  # fmt: skip
    for name, r in by_name.items():
        if name not in (OBSERVED, QUIET, MATMUL_1, MATMUL_2) and r is not peer:
            benchkit.emit(f"serve {name}: s per request, {connections} conns (peer: MLServer)", 1 / r.rps,
                          None, peer_request)  # fmt: skip


def median(rounds: list[list[Result]]) -> list[Result]:
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    by_name: dict[str, list[Result]] = {}
    for result in (r for one in rounds for r in one):
        by_name.setdefault(result.name, []).append(result)
    return [
        Result(
            runs[0].name,
            mid([r.rps for r in runs]),
            mid([r.p50_ms for r in runs]),
            mid([r.p99_ms for r in runs]),
            sum(r.errors for r in runs),
            max(r.peak_rss_mib for r in runs),
            mid([r.cpu_us for r in runs]),
        )
        for runs in by_name.values()
    ]


def report(title: str, results: list[Result]) -> None:
    print(f"\n{title}")
    head = f"{'server':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'peak RSS MiB':>13}"
    print(f"{head} {'CPU us/req':>11}")
    for r in results:
        row = f"{r.name:<44} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
        print(f"{row} {r.errors:>7} {r.peak_rss_mib:>13.0f} {r.cpu_us:>11.1f}")
    baseline = next((r for r in results if r.name.startswith("MLServer")), None)
    if baseline is not None:
        for r in results:
            if r is not baseline and r.name.startswith("modelpack iris"):  # the same model as MLServer's
                print(
                    f"{r.name}: {r.rps / baseline.rps:.1f}x MLServer's throughput (target >= 10x), "
                    f"p99 {r.p99_ms / baseline.p99_ms:.2f} of MLServer's (target <= 0.25), "
                    f"{baseline.cpu_us / r.cpu_us:.1f}x less server CPU a request"
                )
    names = {r.name.removeprefix("modelpack "): r for r in results}
    if OBSERVED in names and QUIET in names:
        cost = 1 - names[OBSERVED].rps / names[QUIET].rps
        cpu = names[OBSERVED].cpu_us / names[QUIET].cpu_us - 1
        print(
            f"metrics + request log cost {cost:.1%} of the throughput (target <= 5%), "
            f"{cpu:.1%} more server CPU a request"
        )
    if MATMUL_1 in names and MATMUL_2 in names:
        gain = names[MATMUL_2].rps / names[MATMUL_1].rps
        print(f"2 workers on the CPU-bound model: {gain:.2f}x one worker's throughput (target >= 1.7x)")


if __name__ == "__main__":
    main()
