"""Registry I/O benchmark: modelpack's push vs `skopeo copy` and oras-py, re-push, and retag.

Run by hand (needs the Debian packages docker-registry and skopeo, and oras-py in the venv):

    .venv/bin/python bench/registry_bench.py                 # 1 GiB, 3 rounds
    .venv/bin/python bench/registry_bench.py --size-mib 64 --rounds 1

Each round starts its own `docker-registry` (distribution 2.8) on a free 127.0.0.1 port with temporary
storage, so no tool can mount a blob another pushed earlier (skopeo's blob-info cache is keyed by
registry host:port). The same random blob, stored once in an OCI layout as a one-layer artifact
(empty config, `artifactType`, so skopeo copies it byte for byte instead of recompressing an image
layer), is pushed by each tool into a fresh repository: modelpack (the library's copy_graph from the
layout, in a child process), `skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG`, and oras-py's push of
the same file. Wall time is the child process's, start to exit, for all three; peak RSS is the child's
own ru_maxrss from wait4. Then: modelpack re-pushes the same (everything exists), and a 1 MB and the big
release are retagged 20 times each (GET the manifest bytes + PUT them under a new tag, a new client each
time as one `modelpack tag` has). The results table prints medians over the rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import benchkit  # bench/, beside this script
import httpx

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
ARTIFACT_TYPE = "application/vnd.modelpack.bench.v1"
LAYER_TYPE = "application/octet-stream"
PIECE = 1 << 20
PUSHES = ("modelpack push", "skopeo copy", "oras-py push")  # the rows compared with skopeo


@dataclass(frozen=True)
class Run:
    tool: str
    seconds: float
    peak_rss_mib: float
    inner_seconds: float | None = None  # measured inside the child, without interpreter start
    cpu_seconds: float = 0.0  # the child's user + system CPU


# -- the registry -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Registry:
    """docker-registry on 127.0.0.1 with its storage under `root`; stopped by its own pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Registry:
        self.root.mkdir(parents=True)
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "storage")}},
            "http": {"addr": self.host, "secret": "modelpack-bench"},
        }
        (self.root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        log = open(self.root / "registry.log", "wb")
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.root / "config.yml")], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.__exit__()
        raise SystemExit(f"docker-registry did not start on {self.host}; see {self.root / 'registry.log'}")

    def __exit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root / "storage", ignore_errors=True)


# -- the content --------------------------------------------------------------------------------------


def make_artifact(layout_dir: Path, size: int, tag: str) -> Path:
    """A `size`-byte random blob as the one layer of an artifact tagged `tag` in the layout; returns the
    blob's file (written once, hashed while written, renamed under its digest)."""
    from modelpack.oci import mediatypes as mt
    from modelpack.oci.model import Descriptor, Manifest
    from modelpack.store.layout import LayoutStore

    store = LayoutStore(layout_dir)
    empty = store.put_blob_bytes(mt.EMPTY_JSON, mt.OCI_EMPTY)  # also creates the layout
    tmp = layout_dir / "blobs" / f".bench-{tag}"
    sha = hashlib.sha256()
    with open(tmp, "wb") as f:
        left = size
        while left:
            piece = os.urandom(min(PIECE, left))
            sha.update(piece)
            f.write(piece)
            left -= len(piece)
    digest = f"sha256:{sha.hexdigest()}"
    final = store.blob_path(digest)
    os.replace(tmp, final)
    layer = Descriptor(LAYER_TYPE, digest, size)
    store.put_document(Manifest(config=empty, layers=(layer,), artifact_type=ARTIFACT_TYPE), tag=tag)
    return final


# -- running a tool as a measured child ---------------------------------------------------------------


def measured(tool: str, argv: Sequence[str], cwd: Path | None = None) -> tuple[Run, str]:
    """Run `argv`; wall time start to exit, peak RSS from wait4 (this child's own ru_maxrss)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed (exit {proc.returncode}):\n{text}")
    inner = None
    if text.startswith("{"):
        inner = float(json.loads(text.splitlines()[0])["seconds"])
    cpu = usage.ru_utime + usage.ru_stime
    return Run(tool, seconds, usage.ru_maxrss / 1024, inner, cpu), text


def child_push(layout: str, tag: str, dest: str) -> None:
    """The modelpack push, as a child: the library's copy_graph from the layout to the registry."""
    from modelpack.oci.copy import copy_graph
    from modelpack.store.layout import LayoutStore
    from modelpack.targets import Targets

    started = time.perf_counter()  # the operation, after the imports (the wall time has them)
    with Targets(environ={}) as targets:
        target = targets.open(dest, local=False)
        result = copy_graph(LayoutStore(layout), target.target, tag, target.ref)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "copied": result.blobs_copied, "skipped": result.blobs_skipped}))


def child_oras(host: str, file_name: str, target: str) -> None:
    import oras.client  # type: ignore[import-untyped]

    started = time.perf_counter()
    oras.client.OrasClient(hostname=host, insecure=True).push(files=[file_name], target=target, quiet=True)
    print(json.dumps({"seconds": time.perf_counter() - started}))


# -- one round ----------------------------------------------------------------------------------------


def push_round(work: Path, layout: Path, blob: Path, n: int, tools: Sequence[str]) -> list[Run]:
    runs: list[Run] = []
    with Registry(work / f"registry-{n}") as reg:
        me = [sys.executable, str(Path(__file__).resolve())]
        skopeo = ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:big"]
        skopeo.append(f"docker://{reg.host}/bench/skopeo:big")
        commands: dict[str, Callable[[], tuple[Run, str]]] = {
            "modelpack": lambda: measured(
                "modelpack push", [*me, "_push", str(layout), "big", f"{reg.host}/bench/modelpack:big"]
            ),
            "skopeo": lambda: measured("skopeo copy", skopeo),
            "oras": lambda: measured(
                "oras-py push",
                [*me, "_oras", reg.host, blob.name, f"{reg.host}/bench/oras:big"],
                cwd=blob.parent,
            ),
        }
        order = list(tools[n % len(tools) :]) + list(tools[: n % len(tools)])  # rotate: no tool always first
        for tool in order:
            run, text = commands[tool]()
            if tool == "skopeo" and "already exists" in text:
                raise SystemExit(f"skopeo skipped a blob, the comparison is void:\n{text}")
            if tool == "modelpack" and json.loads(text.splitlines()[0])["copied"] != 2:
                raise SystemExit(f"modelpack did not upload both blobs:\n{text}")
            runs.append(run)
        repush, text = measured(
            "modelpack re-push (all there)",
            [*me, "_push", str(layout), "big", f"{reg.host}/bench/modelpack:big"],
        )
        assert json.loads(text.splitlines()[0])["copied"] == 0, text
        runs.append(repush)
        runs += retags(reg.host, layout)
        # The same retag as a user runs it: interpreter start and imports included (not the target).
        cli = str(Path(sys.executable).parent / "modelpack")
        for i in range(3):
            runs.append(
                measured(
                    "modelpack tag (console script)", [cli, "tag", f"{reg.host}/bench/small:1.0", f"cli-{i}"]
                )[0]
            )
    return runs


def retags(host: str, layout: Path, times: int = 20) -> list[Run]:
    """Retag a 1 MB and the big release `times` times each: GET raw manifest + PUT the same bytes."""
    from modelpack.oci.copy import copy_graph
    from modelpack.registry.client import RegistryRepository
    from modelpack.registry.transport import RegistryClient
    from modelpack.store.layout import LayoutStore

    out: list[Run] = []
    with RegistryClient(host, credentials=lambda _: None) as client:
        copy_graph(LayoutStore(layout), RegistryRepository(client, "bench/small"), "small", "1.0")
    for label, repo, tag in (
        ("retag 1 MB release", "bench/small", "1.0"),
        ("retag 1 GiB release", "bench/modelpack", "big"),
    ):
        samples = []
        for i in range(times):
            started = time.perf_counter()
            with RegistryClient(host, credentials=lambda _: None) as client:
                r = RegistryRepository(client, repo)
                raw = r.get_manifest(tag)
                if r.put_manifest(f"retag-{i}", raw) != raw.digest:
                    raise SystemExit("retag changed the digest")
            samples.append(time.perf_counter() - started)
        out.append(Run(label, statistics.median(samples), 0.0))
    return out


# -- report -------------------------------------------------------------------------------------------


def report(rounds: list[list[Run]]) -> None:
    by_tool: dict[str, list[Run]] = {}
    for runs in rounds:
        for r in runs:
            by_tool.setdefault(r.tool, []).append(r)
    skopeo = (
        statistics.median(r.seconds for r in by_tool["skopeo copy"]) if "skopeo copy" in by_tool else None
    )
    print()
    print(
        f"| {'what':<30} | {'seconds':>8} | {'in-process s':>12} | {'vs skopeo':>9} | {'peak RSS MiB':>12} "
        f"| {'CPU s':>6} |"
    )
    print(f"| {'-' * 30} | {'-' * 7}: | {'-' * 11}: | {'-' * 8}: | {'-' * 11}: | {'-' * 5}: |")
    for tool, runs in by_tool.items():
        seconds = statistics.median(r.seconds for r in runs)
        inner = [r.inner_seconds for r in runs if r.inner_seconds is not None]
        rss = max(r.peak_rss_mib for r in runs)
        ratio = f"{seconds / skopeo:.2f}x" if skopeo and tool in PUSHES else ""
        inner_text = f"{statistics.median(inner):.3f}" if inner else ""
        rss_text = f"{rss:.0f}" if rss else ""
        secs = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f}"
        cpu = statistics.median(r.cpu_seconds for r in runs)
        cpu_text = f"{cpu:.2f}" if cpu else ""
        print(f"| {tool:<30} | {secs:>8} | {inner_text:>12} | {ratio:>9} | {rss_text:>12} | {cpu_text:>6} |")
    for tool, runs in by_tool.items():  # the BENCH lines bench/all collects; push is compared with skopeo
        seconds = statistics.median(r.seconds for r in runs)
        benchkit.emit(f"registry: {tool}", seconds, peer=skopeo if tool == "modelpack push" else None)
    if len(rounds) > 1:
        print("\nper round (s): " + "; ".join(
            f"{tool} " + " / ".join(f"{r.seconds:.2f}" for r in runs) for tool, runs in by_tool.items()
            if "retag" not in tool
        ))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "_push":
        child_push(*args[1:4])
        return
    if args and args[0] == "_oras":
        child_oras(*args[1:4])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the random blob (default 1 GiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default="modelpack,skopeo,oras")
    parser.add_argument("--workdir", type=Path, default=None, help="where the layout and registries live")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 1 round (what bench/all runs)")
    opts = parser.parse_args(args)
    if opts.quick:
        opts.size_mib, opts.rounds = 64, 1
    tools = [t for t in opts.tools.split(",") if t]
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="registry-bench-", dir=opts.workdir) as tmp:
        work = Path(tmp)
        layout = work / "layout"
        t0 = time.perf_counter()
        blob = make_artifact(layout, opts.size_mib << 20, "big")
        make_artifact(layout, 1 << 20, "small")
        # oras-py pushes a named file from its working directory: the same bytes under a file name.
        named = work / "oras" / "model.bin"
        named.parent.mkdir()
        os.link(blob, named)
        print(f"{opts.size_mib} MiB random blob written in {time.perf_counter() - t0:.1f} s", flush=True)
        rounds = []
        for n in range(opts.rounds):
            runs = push_round(work, layout, named, n, tools)
            print(f"round {n + 1}: " + ", ".join(f"{r.tool} {r.seconds:.3f}s" for r in runs), flush=True)
            rounds.append(runs)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    report(rounds)


if __name__ == "__main__":
    main()
