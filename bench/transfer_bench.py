"""Pull, unpack and push at the wire's speed (issue 13): modelpack vs curl (the limit), skopeo and oras-py.

    .venv/bin/python bench/transfer_bench.py --quick          # 128 MiB, 1 round
    .venv/bin/python bench/transfer_bench.py                  # 1 GiB, 3 rounds (by hand: minutes)
    .venv/bin/python bench/transfer_bench.py --only-unpack    # 1 GiB unpack vs curl, 3 rounds

Needs the Debian packages docker-registry, skopeo and curl, and oras-py in the venv. One registry
(distribution 2.8, 127.0.0.1, temporary storage) holds an artifact whose one layer is N MiB of random
bytes (the layer is an octet stream, so skopeo copies it byte for byte) and a real bundle release of
N MiB weights (`api.build`, pushed with copy_graph). Figures, each tool a child process (wall time; the
modelpack ratio uses its in-process time, i.e. without Python start and imports, which the table shows):

  pull, loopback       registry -> an OCI layout: modelpack (copy_graph into a LayoutStore: verified,
                       fsynced), `curl -o` of every blob (the limit: no digest check, no fsync),
                       `skopeo copy docker://... oci:DIR` (peer) and oras-py's pull.
  pull, throttled      the same through throttle_proxy.py (25 MB/s per connection, 20 ms each way; a
                       CDN-backed registry): modelpack's parallel ranges against single streams.
  unpack, loopback     `api.unpack` of the bundle's registry ref straight into a folder (each layer streamed
                       from the network through the tar extractor) vs `curl -o` of the same blobs.
  push, loopback       the artifact from an OCI layout, and the bundle (several blobs, in parallel), vs curl
                       (POST + one monolithic PUT per blob, one after the other) and skopeo (peer).

Peak RSS is GNU time's %M for each child; `sync` runs before each one, so no tool pays for the writeback of
what the one before it wrote. The last lines are one `BENCH {json}` per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_bench import Registry, Run, make_artifact, measured
from throttle_proxy import ThrottleProxy

ME = [sys.executable, str(Path(__file__).resolve())]
TIME = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
Blobs = list[tuple[str, Path]]


# -- children: one operation each, timed inside too ---------------------------------------------------


def _say(started: float, **more: object) -> None:
    print(json.dumps({"seconds": time.perf_counter() - started, **more}))


def child_pull(ref: str, layout: str) -> None:
    from modelpack.oci.copy import copy_graph
    from modelpack.store.layout import LayoutStore
    from modelpack.targets import Targets

    started = time.perf_counter()
    with Targets(environ={}) as targets:
        source = targets.open(ref, local=False)
        result = copy_graph(source.target, LayoutStore(layout), source.need_ref("pull"))
    _say(started, copied=result.blobs_copied)


def child_unpack(ref: str, dest: str) -> None:
    from modelpack import api
    from modelpack.targets import Targets

    unpack = api.unpack  # api imports a verb's module on first use: before the clock, as for the others
    started = time.perf_counter()
    with Targets(environ={}, store_path=Path(dest).parent / "unused-store") as targets:
        result = unpack(targets, ref, Path(dest))
    _say(started, files=len(result.files))


def child_push(layout: str, tag: str, dest: str) -> None:
    from modelpack.oci.copy import copy_graph
    from modelpack.store.layout import LayoutStore
    from modelpack.targets import Targets

    started = time.perf_counter()
    with Targets(environ={}) as targets:
        target = targets.open(dest, local=False)
        result = copy_graph(LayoutStore(layout), target.target, tag, target.ref)
    _say(started, copied=result.blobs_copied)


def child_oras_pull(host: str, target: str, outdir: str) -> None:
    import oras.client  # type: ignore[import-untyped]

    started = time.perf_counter()
    oras.client.OrasClient(hostname=host, insecure=True).pull(target=target, outdir=outdir)
    _say(started)


CHILDREN: dict[str, Callable[..., None]] = {
    "_pull": child_pull,
    "_unpack": child_unpack,
    "_push": child_push,
    "_oras_pull": child_oras_pull,
}


# -- content ------------------------------------------------------------------------------------------


def blobs_of(layout: Path, tag: str) -> list[tuple[str, Path]]:
    """(digest, file) of every blob the tag's graph names, manifests excluded."""
    from modelpack.oci.model import Index, Manifest, parse
    from modelpack.store.layout import LayoutStore

    store = LayoutStore(layout)
    out: dict[str, Path] = {}

    def walk(ref: str) -> None:
        raw = store.get_manifest(ref)
        doc = parse(raw.raw, raw.media_type)
        if isinstance(doc, Index):
            for child in doc.manifests:
                walk(child.digest)
        elif isinstance(doc, Manifest):
            for d in (doc.config, *doc.layers):
                path = store.blob_path(d.digest)
                if not path.is_file():
                    # a weights layer the store serves from its source file (docs/store.md): curl needs
                    # the layer as one file, so it gets a copy (made here, outside every timing)
                    path = layout.parent / "curl-blobs" / d.digest.split(":")[1]
                    path.parent.mkdir(exist_ok=True)
                    with store.read_blob(d) as chunks, open(path, "wb") as f:
                        for chunk in chunks:
                            f.write(chunk)
                out[d.digest] = path

    walk(tag)
    return list(out.items())


def make_bundle(work: Path, size: int) -> Path:
    """A real release of `size` bytes of weights, built into a layout; returns the layout."""
    from modelpack import api
    from modelpack.targets import Targets

    project = work / "project"
    project.mkdir()
    (project / "modelpack.yaml").write_text(
        "name: bench-transfer\nversion: 1.0.0\nmodel:\n  paths: [weights.bin]\n  format: other\n"
        "code:\n  paths: [handler.py]\n  handler: handler:Model\n"
        'dependencies:\n  lockfile: requirements.lock\n  python: "3.11"\n'
    )
    handler = "class Model:\n    def predict(self, inputs):\n        return inputs\n"
    (project / "handler.py").write_text(handler)
    (project / "requirements.lock").write_text("numpy==2.4.6\n")
    with open(project / "weights.bin", "wb") as f:
        left = size
        while left:
            piece = os.urandom(min(1 << 24, left))
            f.write(piece)
            left -= len(piece)
    layout = work / "bundle-layout"
    # the weights stay: the store serves their layer from this file (docs/store.md), it holds no copy
    api.build(Targets(store_path=layout), project, environ=EPOCH)
    return layout


# -- the limits: curl ---------------------------------------------------------------------------------


def curl_get(host: str, repo: str, blobs: Sequence[tuple[str, Path]], out: Path) -> list[str]:
    argv = ["curl", "-sS", "--fail"]
    for i, (digest, _) in enumerate(blobs):
        argv += ["-o", str(out / f"blob-{i}"), f"http://{host}/v2/{repo}/blobs/{digest}"]
    return argv


CURL_PUT = r"""
set -e
for pair in "$@"; do
  digest="${pair%%=*}"; file="${pair#*=}"
  loc=$(curl -sS --fail -X POST -D - -o /dev/null "http://$HOST/v2/$REPO/blobs/uploads/" \
        | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$loc" in http*) ;; *) loc="http://$HOST$loc" ;; esac
  case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sS --fail -X PUT -H 'Content-Type: application/octet-stream' -T "$file" \
       "$loc${sep}digest=$digest" -o /dev/null
done
"""


def curl_put(host: str, repo: str, blobs: Sequence[tuple[str, Path]]) -> list[str]:
    return ["env", f"HOST={host}", f"REPO={repo}", "sh", "-c", CURL_PUT, "curl-put"] + [
        f"{d}={p}" for d, p in blobs
    ]


# -- figures ------------------------------------------------------------------------------------------


def timed_run(tool: str, argv: Sequence[str], cwd: Path | None = None) -> Run:
    """Wall and CPU from wait4; peak RSS from GNU time, because a child forked from this (large) process
    starts with the parent's resident pages counted in its own ru_maxrss. Dirty pages are flushed first:
    the GiBs the previous tools wrote would otherwise throttle this one's writes (writeback)."""
    os.sync()
    if not TIME:
        return measured(tool, argv, cwd)[0]
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        run = measured(tool, [TIME, "-o", rss.name, "-f", "%M", *argv], cwd)[0]
        kib = int(Path(rss.name).read_text().split()[-1])
    return Run(run.tool, run.seconds, kib / 1024, run.inner_seconds, run.cpu_seconds)


def one_round(
    work: Path, n: int, art: Path, bundle: Path, throttled: bool, loopback: bool, unpack_only: bool = False
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    art_blobs, bundle_blobs = blobs_of(art, "big"), blobs_of(bundle, "bench-transfer:1.0.0")
    with Registry(work / f"registry-{n}") as reg:
        if unpack_only:  # the bundle in the registry, then its unpack against curl of the same blobs
            bundle_ref = f"{reg.host}/bench/bundle:1.0.0"
            timed_run("modelpack push", [*ME, "_push", str(bundle), "bench-transfer:1.0.0", bundle_ref])
            out = work / f"out-{n}-loopback"
            out.mkdir()
            runs.update(_unpacks(out, reg.host, bundle_blobs))
            shutil.rmtree(out)
            return runs
        loopback_runs = _pushes(reg.host, art, bundle, art_blobs, bundle_blobs)
        if loopback:
            runs.update(loopback_runs)
        hosts = [("loopback", reg.host)] if loopback else []
        proxy = ThrottleProxy(reg.port) if throttled else None
        if proxy is not None:
            proxy.__enter__()
            hosts.append(("throttled", proxy.host))
        try:
            for label, host in hosts:
                runs.update(_pulls(work / f"out-{n}-{label}", label, host, art_blobs, bundle_blobs))
        finally:
            if proxy is not None:
                proxy.__exit__()
    return runs


def _pushes(
    host: str, art: Path, bundle: Path, art_blobs: Blobs, bundle_blobs: Blobs
) -> dict[str, Run]:
    """The pushes also fill the registry the pulls read (every push goes to a repository of its own)."""
    skopeo = ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{art}:big", f"docker://{host}/bench/skopeo:big"]
    bundle_ref = f"{host}/bench/bundle:1.0.0"
    return {
        "push artifact: modelpack": timed_run(
            "modelpack push", [*ME, "_push", str(art), "big", f"{host}/bench/art:big"]
        ),
        "push artifact: curl PUT": timed_run("curl PUT", curl_put(host, "bench/curl", art_blobs)),
        "push artifact: skopeo": timed_run("skopeo copy", skopeo),
        "push bundle: modelpack": timed_run(
            "modelpack push", [*ME, "_push", str(bundle), "bench-transfer:1.0.0", bundle_ref]
        ),
        "push bundle: curl PUT": timed_run("curl PUT", curl_put(host, "bench/curl2", bundle_blobs)),
    }


def _pulls(out: Path, label: str, host: str, art_blobs: Blobs, bundle_blobs: Blobs) -> dict[str, Run]:
    out.mkdir()
    skopeo = ["skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/bench/art:big"]
    skopeo.append(f"oci:{out}/sk:big")
    runs = {
        f"pull {label}: modelpack": timed_run(
            "modelpack pull", [*ME, "_pull", f"{host}/bench/art:big", str(out / "mp")]
        ),
        f"pull {label}: curl GET": timed_run("curl GET", curl_get(host, "bench/art", art_blobs, out)),
        f"pull {label}: skopeo": timed_run("skopeo copy", skopeo),
        f"pull {label}: oras-py": timed_run(
            "oras-py pull", [*ME, "_oras_pull", host, f"{host}/bench/art:big", str(out / "oras")]
        ),
    }
    if label == "loopback":
        runs.update(_unpacks(out, host, bundle_blobs))
    shutil.rmtree(out)
    return runs


def _unpacks(out: Path, host: str, bundle_blobs: Blobs) -> dict[str, Run]:
    return {
        "unpack loopback: modelpack": timed_run(
            "modelpack unpack", [*ME, "_unpack", f"{host}/bench/bundle:1.0.0", str(out / "unpacked")]
        ),
        "unpack loopback: curl GET": timed_run("curl GET", curl_get(host, "bench/bundle", bundle_blobs, out)),
    }


# (operation, modelpack row, curl row, peer row, the target as a multiple of curl: issue 13 items 2-3;
# None: the target is to beat the peer's single stream, the throttled pull's point)
FIGURES = [
    ("pull, loopback", "pull loopback: modelpack", "pull loopback: curl GET", "pull loopback: skopeo", 1.3),
    ("pull, 25 MB/s per connection + 20 ms", "pull throttled: modelpack", "pull throttled: curl GET",
     "pull throttled: skopeo", None),
    ("unpack from a registry, loopback", "unpack loopback: modelpack", "unpack loopback: curl GET", None, 1.3),
    ("push, one blob, loopback", "push artifact: modelpack", "push artifact: curl PUT",
     "push artifact: skopeo", 1.05),
    ("push, bundle (several blobs), loopback", "push bundle: modelpack", "push bundle: curl PUT", None, 1.05),
]  # fmt: skip


def report(rounds: list[dict[str, Run]], size_mib: int) -> None:
    rows = list(rounds[0])

    def med(row: str, inner: bool = False) -> float:
        values = [
            r[row].inner_seconds if inner and r[row].inner_seconds is not None else r[row].seconds
            for r in rounds
        ]
        return statistics.median(values)

    print(f"\n| {'what':<32} | {'wall s':>7} | {'in-process s':>12} | {'peak RSS MiB':>12} | {'CPU s':>6} |")
    print(f"| {'-' * 32} | {'-' * 6}: | {'-' * 11}: | {'-' * 11}: | {'-' * 5}: |")
    for row in rows:
        inner = [r[row].inner_seconds for r in rounds if r[row].inner_seconds is not None]
        rss = max(r[row].peak_rss_mib for r in rounds)
        cpu = statistics.median(r[row].cpu_seconds for r in rounds)
        inner_text = f"{statistics.median(inner):.2f}" if inner else ""
        print(f"| {row:<32} | {med(row):>7.2f} | {inner_text:>12} | {rss:>12.0f} | {cpu:>6.2f} |")
    print()
    for operation, mine, curl, peer, factor in FIGURES:
        if mine not in rounds[0]:
            continue
        m, c = med(mine, inner=True), med(curl)
        p = med(peer) if peer else None
        target = c * factor if factor else p
        if target is None:
            continue
        what = f"{factor}x curl's {c:.2f} s" if factor else f"{peer.split(': ')[1]}'s single stream"
        verdict = "met" if m <= target else "MISSED"
        print(f"{operation}: modelpack {m:.2f} s, {m / c:.2f}x curl; limit {target:.2f} s ({what}): {verdict}")
        line = {"operation": f"{operation}, {size_mib} MiB", "modelpack": round(m, 3),
                "limit": round(target, 3), "peer": round(p, 3) if p is not None else None,
                "ratio": round(m / target, 3)}  # fmt: skip
        print("BENCH " + json.dumps(line))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in CHILDREN:
        CHILDREN[args[0]](*args[1:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="128 MiB, 1 round (unless --rounds)")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--no-throttle", action="store_true", help="skip the throttled pulls")
    parser.add_argument("--only-throttled", action="store_true", help="only the throttled pulls")
    parser.add_argument("--only-unpack", action="store_true", help="only unpack against curl")
    parser.add_argument("--workdir", type=Path, default=None)
    opts = parser.parse_args(args)
    size_mib = 128 if opts.quick else opts.size_mib
    rounds_n = opts.rounds or (1 if opts.quick else 3)
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="transfer-bench-", dir=opts.workdir) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        art = work / "art-layout"
        make_artifact(art, (1 if opts.only_unpack else size_mib) << 20, "big")
        bundle = make_bundle(work, size_mib << 20)
        print(f"{size_mib} MiB artifact and bundle made in {time.perf_counter() - t0:.1f} s", flush=True)
        rounds = []
        for n in range(rounds_n):
            runs = one_round(
                work, n, art, bundle, not opts.no_throttle, not opts.only_throttled, opts.only_unpack
            )
            done = ", ".join(f"{k} {r.seconds:.2f}s" for k, r in runs.items())
            print(f"round {n + 1}: {done}", flush=True)
            rounds.append(runs)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    report(rounds, size_mib)


if __name__ == "__main__":
    main()
