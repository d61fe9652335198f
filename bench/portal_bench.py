"""The portal's first page (a repository of 200 versions) cold and warm, against a loopback registry.

Run by hand (not a test):

    .venv/bin/python bench/portal_bench.py [--versions 200] [--rounds 3] [--warm-rounds 10]

It starts its own `docker-registry` on a free 127.0.0.1 port, builds examples/iris-onnx once and pushes
--versions releases of it (the same layers, each manifest with its own record: version, metrics, params),
attaches a test report with latency to each, promotes two of them (staging, prod), then serves the portal
in this process and times GET of the repository page over HTTP:
  - cold: a fresh portal (new registry clients, empty digest cache on disk, empty memo), first request;
  - warm: the same page again within the memo's TTL (tags and referrers kept a few seconds);
  - revalidated: the memo expired (tags and referrers read again), manifests from the digest cache.
Limits (issue 15 item 5): cold < 2 s, warm < 200 ms. Revalidated has no limit of its own in the issue;
it is measured against the warm limit, as the stricter reading of "warm". Peer: none (no comparable tool).
Ends with one `BENCH {...}` line per figure for bench/all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollback_bench import Registry

from modelpack import api
from modelpack.environment.move import Runtime
from modelpack.evidence import evidence
from modelpack.oci import mediatypes as mt
from modelpack.oci.copy import copy_graph
from modelpack.oci.model import Descriptor, Manifest
from modelpack.oci.target import RawManifest
from modelpack.portal.cache import DiskCache, Memo
from modelpack.portal.data import Source, slugs
from modelpack.portal.server import make_server
from modelpack.portal.views import Pages
from modelpack.record.record import Metric
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iris-onnx"
COLD_LIMIT, WARM_LIMIT = 2.0, 0.2


def populate(tmp: Path, host: str, n: int) -> str:
    store = LayoutStore(tmp / "build-store")
    built = api.build(Targets(store_path=store.root), EXAMPLE, version="1.0.0", environ={"SOURCE_DATE_EPOCH": "1700000000"}).bundle
    repo = f"{host}/bench/portal"
    with api.Targets(store_path=tmp / "build-store", environ={}) as targets:
        target = targets.open(repo).target
        copy_graph(store, target, built.tag, "1.0.0")  # the blobs, once
        base = Manifest.from_bytes(store.get_manifest(built.tag).raw) if hasattr(Manifest, "from_bytes") else None
        raw0 = store.get_manifest(built.tag)
        doc = json.loads(raw0.raw)
        for i in range(n):
            version = f"1.{i}.0"
            rec = dataclasses.replace(
                built.record,
                version=version,
                metrics={
                    "accuracy": Metric(0.80 + 0.15 * ((i * 37) % 100) / 100, "iris-test"),
                    "f1_macro": Metric(0.78 + 0.15 * ((i * 53) % 100) / 100, "iris-test"),
                },
                params={**built.record.params, "lr": 0.1 / (1 + i % 7), "seed": i},
            )
            doc["annotations"] = {
                **doc["annotations"],
                mt.ANN_RECORD: rec.to_bytes().decode(),
                mt.ANN_VERSION: version,
            }
            data = json.dumps(doc, separators=(",", ":")).encode()
            from modelpack.oci import digest as digests

            raw = RawManifest(data, raw0.media_type, digests.of_bytes(data))
            target.put_manifest(version, raw)
            evidence.attach(
                target,
                Descriptor(raw.media_type, raw.digest, len(data)),
                evidence.REPORT_TYPE,
                b'{"passed": true}',
                evidence.REPORT_MEDIA_TYPE,
                evidence.report_annotations(
                    passed=True,
                    created="2026-12-02T00:00:00Z",
                    runtime="local",
                    version=version,
                    measured={"latency_p95_ms": 2.0 + (i % 9)},
                ),
            )
        del base
        rt = Runtime(environ={}, actor="bench")
        api.promote(targets, f"{repo}:1.{n - 2}.0", "staging", reason="bench", runtime=rt)
        api.promote(targets, f"{repo}:1.{n - 3}.0", "prod", reason="bench", runtime=rt)
    return repo


def get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
        assert r.status == 200 and b'class="version"' in body, r.status
    return time.perf_counter() - t0


class Portal:
    """A portal served from a thread, with its own clients, digest cache dir and memo."""

    def __init__(self, repo: str, cache_dir: Path, ttl: float) -> None:
        self.targets = api.Targets(store_path=cache_dir, environ={})
        self.source = Source(self.targets, [repo], DiskCache(cache_dir / "cache"), Memo(ttl))
        self.server = make_server(Pages(self.source), "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/r/{slugs([repo])[repo]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.targets.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm-rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="1 round (what bench/all runs); still 200 versions")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.warm_rounds = 1, 5
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as d:
        tmp = Path(d)
        reg = Registry(tmp)
        try:
            t0 = time.perf_counter()
            repo = populate(tmp, reg.host, args.versions)
            print(f"pushed {args.versions} versions with reports in {time.perf_counter() - t0:.1f} s")
            cold, warm, revalidated = [], [], []
            for r in range(args.rounds):
                p = Portal(repo, tmp / f"portal-{r}", ttl=3600.0)
                try:
                    cold.append(get(p.url))
                    warm += [get(p.url) for _ in range(args.warm_rounds)]
                finally:
                    p.close()
                p = Portal(repo, tmp / f"portal-{r}", ttl=0.0)  # the same disk cache, nothing memoized
                try:
                    get(p.url)  # connections and templates: what a long-running portal has already
                    revalidated += [get(p.url) for _ in range(args.warm_rounds)]
                finally:
                    p.close()
        finally:
            reg.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = [
        (f"portal repository page, {args.versions} versions, cold", statistics.median(cold), COLD_LIMIT),
        (f"portal repository page, {args.versions} versions, warm", statistics.median(warm), WARM_LIMIT),
        (
            f"portal repository page, {args.versions} versions, revalidated (tags and referrers re-read)",
            statistics.median(revalidated),
            WARM_LIMIT,
        ),
    ]
    print(f"peak RSS {rss:.0f} MiB")
    for name, seconds, limit in figures:
        verdict = "met" if seconds < limit else "MISSED"
        print(f"{name}: {seconds:.3f} s, limit {limit} s, ratio {seconds / limit:.2f} ({verdict})")
    for name, seconds, limit in figures:
        line = {"operation": name, "modelpack": round(seconds, 4), "limit": limit, "peer": None}
        print("BENCH " + json.dumps({**line, "ratio": round(seconds / limit, 3)}))


if __name__ == "__main__":
    main()
