"""promote / rollback vs `skopeo copy` and the naive `docker pull + tag + push`, at 1 MB and 1 GiB of weights.

Run by hand (not a test):

    eval "$(scripts/test-env env)"   # for the docker column; without an engine that column is skipped
    .venv/bin/python bench/rollback_bench.py [--sizes 1M,1G] [--rounds 20] [--cli-rounds 5] [--no-docker]
    .venv/bin/python bench/rollback_bench.py --quick        # 1M, few rounds, for bench/all

It starts its own `docker-registry` (distribution 2.8) on a free 127.0.0.1 port with storage in a temp dir,
pushes two releases per size (an index over a linux/amd64 image and a bundle manifest whose weight layer
is the image's layer, as modelpack builds them; hand-made here so the 1 GiB case needs no model), attaches a
passing test report to each, then times:
  - promote / rollback as library calls (median of --rounds, each a real move with its event and settle),
  - `modelpack promote` / `modelpack rollback` wall time as a user runs them (median of --cli-rounds),
  - `skopeo copy --all docker://REPO:v1 docker://REPO:prod` (crane-style tag copy; skopeo 1.9 rewrites the
    index, so prod gets another digest, and refuses with --preserve-digests: the script reports that),
  - `docker pull REPO:v1 && docker tag && docker push REPO:prod` (needs an engine; image removed first).
Peak RSS: this process for the library calls, each child (os.wait4) for the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import benchkit  # bench/, beside this script

from modelpack.environment.place import Place
from modelpack.environment.promote import Runtime, promote, rollback
from modelpack.evidence.evidence import attach
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index, Manifest, Platform
from modelpack.oci.target import RawManifest
from modelpack.registry.client import RegistryRepository
from modelpack.registry.transport import RegistryClient

MODELPACK = Path(sys.executable).parent / "modelpack"
REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SIZES = {"1M": 1024 * 1024, "1G": 1024 * 1024 * 1024}
PIECE = 4 * 1024 * 1024
LIMIT_S = 0.150  # promote / rollback, issue 5
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Registry:
    """A throwaway distribution registry on 127.0.0.1 (this script's own child; stopped by pid)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\nlog: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'storage'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}', secret: bench}}\n"
        )
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)],
            stdout=open(root / "registry.log", "wb"),  # noqa: SIM115 - lives as long as the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"registry did not start; see {root / 'registry.log'}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def weights_tar(path: Path, size: int) -> Path:
    """An uncompressed tar holding models/w.bin of `size` random bytes (streamed: constant memory)."""
    raw = path.with_suffix(".bin")
    with open(raw, "wb") as f:
        left = size
        while left:
            n = min(PIECE, left)
            f.write(os.urandom(n))
            left -= n
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tar.gettarinfo(str(raw), arcname="models/w.bin")
        info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
        with open(raw, "rb") as f:
            tar.addfile(info, f)
    raw.unlink()
    return path


def file_opener(path: Path) -> Callable[[int], Iterator[bytes]]:
    def open_at(offset: int) -> Iterator[bytes]:
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(PIECE):
                yield chunk

    return open_at


def push_bytes(repo: RegistryRepository, media_type: str, data: bytes) -> Descriptor:
    desc = Descriptor.of(media_type, data)
    repo.push_blob(desc, lambda offset: iter([data[offset:]]))
    return desc


def push_release(repo: RegistryRepository, tag: str, version: str, layer_file: Path) -> RawManifest:
    """Image (linux/amd64, the weights tar as its layer) + bundle (same blob as its weight layer) + index."""
    with open(layer_file, "rb") as f:
        layer_digest, size = digests.of_stream(f)
    weights = Descriptor(mt.OCI_LAYER_TAR, layer_digest, size)
    repo.push_blob(weights, file_opener(layer_file))
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [f"MODEL_VERSION={version}"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config = push_bytes(repo, mt.OCI_CONFIG, json.dumps(image_config, sort_keys=True).encode())
    image = Manifest(config=config, layers=(weights,))
    repo.put_manifest(image.digest, RawManifest(image.to_bytes(), image.media_type, image.digest))
    model_config = push_bytes(repo, mt.MODEL_CONFIG, json.dumps({"descriptor": {"name": version}}).encode())
    bundle = Manifest(
        config=model_config,
        layers=(
            Descriptor(mt.MODEL_WEIGHT_TAR, layer_digest, size, annotations={mt.ANN_FILEPATH: "models"}),
        ),
        artifact_type=mt.MODEL_ARTIFACT,
    )
    repo.put_manifest(bundle.digest, RawManifest(bundle.to_bytes(), bundle.media_type, bundle.digest))
    index = Index(
        manifests=(
            image.descriptor(platform=Platform("amd64", "linux")),
            bundle.descriptor(artifact_type=mt.MODEL_ARTIFACT, platform=Platform("unknown", "unknown")),
        ),
        annotations={mt.ANN_VERSION: version},
    )
    raw = RawManifest(index.to_bytes(), index.media_type, index.digest)
    repo.put_manifest(tag, raw)
    subject = Descriptor(raw.media_type, raw.digest, len(raw.raw))
    attach(
        repo,
        subject,
        mt.TEST_REPORT_ARTIFACT,
        b'{"passed":true}',
        "application/json",
        {"dev.modelpack.test.passed": "true", "dev.modelpack.test.created": "2026-11-26T00:00:00Z"},
    )
    return raw


@dataclass
class Timed:
    ms: list[float]
    rss_mib: float

    @property
    def median(self) -> float:
        return statistics.median(self.ms)


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall ms and the command's peak RSS (MiB) of one command; fails loudly. The RSS comes from GNU time
    (`%M`), whose child is forked from a small C process: a child forked from this Python process would
    report this process's own RSS as its peak (Linux keeps the pre-exec high-water mark)."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if GNU_TIME else cmd
        start = time.perf_counter()
        proc = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=err, env=env, check=False)
        elapsed = (time.perf_counter() - start) * 1000
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode(errors='replace')[-800:]}")
        peak_kib = float(rss.read().strip().splitlines()[-1]) if GNU_TIME else float("nan")
    return elapsed, peak_kib / 1024


def timed_commands(cmds: list[list[list[str]]], env: dict[str, str] | None = None) -> Timed:
    """Each entry is one round: a sequence of commands timed together."""
    ms, rss = [], 0.0
    for round_cmds in cmds:
        total = 0.0
        for cmd in round_cmds:
            elapsed, peak = run(cmd, env)
            total += elapsed
            rss = max(rss, peak)
        ms.append(total)
    return Timed(ms, rss)


def library(place: Place, rounds: int, settle_factor: float) -> tuple[Timed, Timed]:
    """promote alternating v1/v2 (a real move each time), then rollbacks (each goes to the other)."""
    rt = Runtime(environ={}, actor="bench", settle_factor=settle_factor)
    promote(place, "v1", "prod", runtime=rt)
    p_ms, r_ms = [], []
    for i in range(rounds):
        t = time.perf_counter()
        promote(place, "v2" if i % 2 == 0 else "v1", "prod", runtime=rt)
        p_ms.append((time.perf_counter() - t) * 1000)
    for _ in range(rounds):
        t = time.perf_counter()
        rollback(place, "prod", runtime=rt)
        r_ms.append((time.perf_counter() - t) * 1000)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Timed(p_ms, rss), Timed(r_ms, rss)


def get_ms(repo: RegistryRepository) -> float:
    start = time.perf_counter()
    repo.get_manifest("v1")
    return (time.perf_counter() - start) * 1000


def same_digest(host: str, repo_name: str, version: str) -> bool:
    """Whether prod names exactly the bytes of `version` (the release's index) after a copy."""
    with RegistryClient(host, credentials=lambda _: None) as client:
        repo = RegistryRepository(client, repo_name)
        return repo.get_manifest("prod").digest == repo.get_manifest(version).digest


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1M,1G")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cli-rounds", type=int, default=5)
    parser.add_argument("--docker-rounds", type=int, default=3)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument(
        "--settle-factor",
        type=float,
        default=Runtime().settle_factor,
        help="library calls only: 0 shows what the race settle wait costs (the CLI keeps the default)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1M only, 5 library, 3 CLI and 1 docker rounds (bench/all)"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.cli_rounds, args.docker_rounds = "1M", 5, 3, 1
    with_docker = not args.no_docker and docker_available()
    print(f"load average before: {load()} (2 cores shared with other runs: absolute numbers move with it)")
    rows, trips, starts = [], [], []
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp_text:
        tmp = Path(tmp_text)
        registry = Registry(tmp)
        env = {**os.environ, "MODELPACK_ACTOR": "bench", "DOCKER_CONFIG": str(tmp / "docker-config")}
        try:
            for label in args.sizes.split(","):
                size = SIZES[label]
                repo_name = f"bench/r{label.lower()}"
                ref = f"{registry.host}/{repo_name}"
                with RegistryClient(registry.host, credentials=lambda _: None) as client:
                    repo = RegistryRepository(client, repo_name)
                    for v in ("v1", "v2"):
                        layer = weights_tar(tmp / f"{label}-{v}.tar", size)
                        push_release(repo, v, v, layer)
                        layer.unlink()
                    place = Place(repo, None, ref)
                    lib_promote, lib_rollback = library(place, args.rounds, args.settle_factor)
                    round_trip = statistics.median(get_ms(repo) for _ in range(args.rounds))
                cli_promote = timed_commands(
                    [
                        [[str(MODELPACK), "promote", f"{ref}:{'v1' if i % 2 else 'v2'}", "prod"]]
                        for i in range(args.cli_rounds)
                    ],
                    env,
                )
                startup = timed_commands(
                    [[[str(MODELPACK), "--version"]] for _ in range(args.cli_rounds)], env
                )
                cli_rollback = timed_commands(
                    [[[str(MODELPACK), "rollback", ref, "prod"]] for _ in range(args.cli_rounds)], env
                )
                skopeo = timed_commands(
                    [
                        [
                            [
                                "skopeo", "copy", "--all", "--src-tls-verify=false",
                                "--dest-tls-verify=false", f"docker://{ref}:{'v1' if i % 2 else 'v2'}",
                                f"docker://{ref}:prod",
                            ]
                        ]
                        for i in range(args.cli_rounds)
                    ],
                    env,
                )  # fmt: skip
                kept = {
                    "skopeo": same_digest(registry.host, repo_name, "v2" if args.cli_rounds % 2 else "v1")
                }
                docker = None
                if with_docker:
                    ms, rss = [], 0.0
                    for i in range(args.docker_rounds):
                        v = "v1" if i % 2 else "v2"
                        subprocess.run(
                            ["docker", "rmi", "-f", f"{ref}:{v}", f"{ref}:prod"], capture_output=True
                        )
                        one = timed_commands(
                            [
                                [
                                    ["docker", "pull", "-q", f"{ref}:{v}"],
                                    ["docker", "tag", f"{ref}:{v}", f"{ref}:prod"],
                                    ["docker", "push", "-q", f"{ref}:prod"],
                                ]
                            ],
                            env,
                        )
                        ms += one.ms
                        rss = max(rss, one.rss_mib)
                    docker = Timed(ms, rss)
                    kept["docker"] = same_digest(
                        registry.host, repo_name, "v2" if args.docker_rounds % 2 else "v1"
                    )
                    subprocess.run(
                        ["docker", "rmi", "-f", f"{ref}:v1", f"{ref}:v2", f"{ref}:prod"], capture_output=True
                    )
                print(
                    f"{label}: prod keeps the release's index digest after: "
                    + ", ".join(f"{tool} {'yes' if ok else 'NO (rewritten)'}" for tool, ok in kept.items())
                    + "; modelpack yes (verified on every move)"
                )
                rows.append((label, lib_promote, lib_rollback, cli_promote, cli_rollback, skopeo, docker))
                trips.append(round_trip)
                starts.append(startup.median)
        finally:
            registry.stop()
    print(f"load average after: {load()}")
    print()
    print(
        "| weights | promote (lib) | rollback (lib) | promote CLI | rollback CLI | skopeo copy --all "
        "| docker pull+tag+push |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, lp, lr, cp, cr, sk, dk in rows:
        cells = [f"{t.median:.0f} ms" for t in (lp, lr, cp, cr, sk)]
        cells.append(f"{dk.median:.0f} ms" if dk else "skipped (no engine)")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print(
        "| weights | skopeo / promote CLI | docker / promote CLI | skopeo / promote lib "
        "| peak RSS MiB: lib, CLI, skopeo, docker CLI |"
    )
    print("| --- | ---: | ---: | ---: | --- |")
    for label, lp, _lr, cp, _cr, sk, dk in rows:
        dock = f"{dk.median / cp.median:.1f}x" if dk else "-"
        rss = f"{lp.rss_mib:.0f}, {cp.rss_mib:.0f}, {sk.rss_mib:.0f}, " + (f"{dk.rss_mib:.0f}" if dk else "-")
        print(f"| {label} | {sk.median / cp.median:.1f}x | {dock} | {sk.median / lp.median:.1f}x | {rss} |")
    print()
    for (label, lp, lr, *_), trip, begin in zip(rows, trips, starts, strict=True):
        print(f"{label}: `modelpack --version` (interpreter start + CLI imports) median {begin:.0f} ms")
        print(
            f"{label}: manifest GET (one round trip) median {trip:.1f} ms; promote = {lp.median / trip:.0f} "
            f"round trips, rollback = {lr.median / trip:.0f} (the registry's latency under this load)"
        )
        print(f"{label}: promote lib min/median/max {min(lp.ms):.0f}/{lp.median:.0f}/{max(lp.ms):.0f} ms; "
              f"rollback {min(lr.ms):.0f}/{lr.median:.0f}/{max(lr.ms):.0f} ms")  # fmt: skip
    # the 150 ms target (issue 5) is for the move itself: the library call; skopeo's copy is the peer
    for label, lp, lr, cp, _cr, sk, _dk in rows:
        peer = sk.median / 1000
        what = f"{label} weights (peer: skopeo copy --all)"
        benchkit.emit(f"promote, library, {what}", lp.median / 1000, LIMIT_S, peer)
        benchkit.emit(f"rollback, library, {what}", lr.median / 1000, LIMIT_S, peer)
        benchkit.emit(f"promote CLI, {what}", cp.median / 1000, None, peer)


if __name__ == "__main__":
    main()
