"""The runtime's Prometheus metrics: counted per worker, shared through a file per worker, summed over the
workers when scraped.

Why not prometheus_client's multiprocess mode: each value it writes takes a lock and a struct pack into
an mmap, and a request touches ten (a labelled counter 3.5 us, three histograms 2.5 us each, the
in-flight gauge up and down 1.4 us each): ~14 us a request, measured on the 2-core bench machine under
load, where the whole request of a small model takes ~70 us idle. Here a worker counts in a plain list with
a fixed layout (known label values only: the endpoints and statuses are closed sets, the model and
version one each): 2 us a request, measured the same way. Each worker copies its list into its own
mmapped file of float64 slots at most PUBLISH_S after a request (one writer per file, no lock); a scrape,
answered by any worker, sums its own live list and the others' files. prometheus_client only renders the
result (`generate_latest`), so the text format and its escaping are the library's.

Counters and histograms of a worker that died stay in the sum (its file stays), so the totals never go
backwards when uvicorn replaces a worker; its in-flight gauge and process metrics leave with it.
One process (workers: 1) keeps the list alone, with no file.

Names (the deploy helper's canary analysis reads the first three):
    modelpack_requests_total{model,version,endpoint,status}          counter
    modelpack_request_duration_seconds{model,version,endpoint}       histogram
    modelpack_requests_in_flight{model,version}                      gauge (summed over workers)
    modelpack_request_size_bytes / modelpack_response_size_bytes     histograms, same labels as duration
    modelpack_errors_total{model,version,kind}                       counter, kinds in ERROR_KINDS
    modelpack_model_load_seconds{model,version}                      gauge, the slowest worker's load
    modelpack_release_info{model,version,bundle_digest,index_digest} 1
    modelpack_workers{model,version}                                 gauge, live worker processes
    process_*{pid}                                                   per live worker (prometheus_client)
"""

from __future__ import annotations

import asyncio
import mmap
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
PUBLISH_S = 0.5
DIR_ENV = "MODELPACK_SERVE_METRICS_DIR"  # where the workers' files live; set by server.run for workers > 1

ENDPOINTS = (
    "infer",
    "model_metadata",
    "model_ready",
    "server_live",
    "server_ready",
    "server_metadata",
    "metadata",
    "metrics",
    "other",
)
STATUSES = (200, 400, 404, 405, 413, 500, 503)  # every status the app answers; anything else is "other"
ERROR_KINDS = (
    "invalid_request",  # 400
    "not_found",  # 404
    "method_not_allowed",  # 405
    "body_too_large",  # 413
    "overloaded",  # 503: the in-flight byte budget is spent
    "not_ready",  # 503: the model is still loading, or the server is draining
    "handler",  # 500: predict() raised
    "response_too_large",  # 500: over max_response_bytes
    "internal",  # 500: anything else
    "connection_dropped",  # guard.py dropped a slow or stalled connection
)
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
)

_E, _S = len(ENDPOINTS), len(STATUSES) + 1
_ENDPOINT = {name: i for i, name in enumerate(ENDPOINTS)}
_STATUS = {code: i for i, code in enumerate(STATUSES)}
_KIND = {kind: i for i, kind in enumerate(ERROR_KINDS)}


def _hist_width(buckets: tuple[float, ...]) -> int:
    return len(buckets) + 2  # one slot per bucket, +Inf, then the sum (counts are not cumulative here)


_DW, _SW = _hist_width(DURATION_BUCKETS), _hist_width(SIZE_BUCKETS)
_OTHER = _ENDPOINT["other"]

# Slot layout of one worker's file (float64 each).
_PID, _INFLIGHT, _LOAD = 0, 1, 2
_REQUESTS = 3
_DURATION = _REQUESTS + _E * _S
_REQ_SIZE = _DURATION + _E * _hist_width(DURATION_BUCKETS)
_RESP_SIZE = _REQ_SIZE + _E * _hist_width(SIZE_BUCKETS)
_ERRORS = _RESP_SIZE + _E * _hist_width(SIZE_BUCKETS)
SLOTS = _ERRORS + len(ERROR_KINDS)


class Metrics:
    """One worker's counters (written on the request path) and the scrape over all workers."""

    def __init__(
        self,
        model: str,
        version: str,
        bundle_digest: str | None,
        index_digest: str | None,
        directory: Path | None,
    ) -> None:
        self.labels = (model, version)
        self._model_path = f"/v2/models/{model}"
        self._versioned_path = f"/v2/models/{model}/versions/{version}" if version else None
        self._endpoints: dict[str, int] = {}
        self.release = {
            "model": model,
            "version": version,
            "bundle_digest": bundle_digest or "",
            "index_digest": index_digest or "",
        }
        self.directory = directory
        self.pid = os.getpid()
        self._values = [0.0] * SLOTS
        self._values[_PID] = float(self.pid)
        self._map: mmap.mmap | None = None
        self._shared: memoryview[float] | None = None
        self._due = False  # a publish is scheduled
        if directory is not None:
            path = directory / f"worker-{self.pid}.metrics"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, SLOTS * 8)
                self._map = mmap.mmap(fd, SLOTS * 8)
            finally:
                os.close(fd)
            self._shared = memoryview(self._map).cast("d")
            self.publish()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    # The request path: a few list updates, nothing else. Each worker counts in a plain list (a list item
    # update is half the cost of a memoryview's) and copies it to its shared file at most PUBLISH_S after
    # a request: another worker's scrape sees this one's counts up to PUBLISH_S late, its own exactly.

    def started(self) -> None:
        self._values[_INFLIGHT] += 1

    def finished(self, path: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        # Inlined (no helper calls): this runs once a request and is most of what metrics cost.
        v = self._values
        v[_INFLIGHT] -= 1
        e = self._endpoints.get(path)
        if e is None:
            e = _ENDPOINT[classify(path, self._model_path, self._versioned_path)]
            if e != _OTHER:
                self._endpoints[path] = e  # known paths only: the cache cannot grow with clients' URLs
        v[_REQUESTS + e * _S + _STATUS.get(status, _S - 1)] += 1
        at = _DURATION + e * _DW
        v[at + bisect_left(DURATION_BUCKETS, seconds)] += 1
        v[at + _DW - 1] += seconds
        at = _REQ_SIZE + e * _SW
        v[at + bisect_left(SIZE_BUCKETS, bytes_in)] += 1
        v[at + _SW - 1] += bytes_in
        at = _RESP_SIZE + e * _SW
        v[at + bisect_left(SIZE_BUCKETS, bytes_out)] += 1
        v[at + _SW - 1] += bytes_out
        if self._shared is not None and not self._due:
            self._due = True
            asyncio.get_running_loop().call_later(PUBLISH_S, self.publish)

    def publish(self) -> None:
        """Copies this worker's values into its shared file, where the other workers' scrapes read them."""
        self._due = False
        if self._shared is not None:
            self._shared[:] = array("d", self._values)

    def error(self, kind: str) -> None:
        self._values[_ERRORS + _KIND[kind]] += 1

    def loaded(self, seconds: float) -> None:
        self._values[_LOAD] = seconds
        self.publish()

    def set_index_digest(self, digest: str | None) -> None:
        self.release["index_digest"] = digest or ""

    # The scrape.

    def exposition(self) -> bytes:
        """The Prometheus text format over every worker."""
        return generate_latest(self._registry)

    def _files(self) -> Iterator[tuple[bool, Sequence[float]]]:
        """(alive, values) of each worker's file; this worker's own values first."""
        yield True, self._values
        if self.directory is None:
            return
        for path in sorted(self.directory.glob("worker-*.metrics")):
            if path.name == f"worker-{self.pid}.metrics":
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue  # removed while we listed
            if len(data) != SLOTS * 8:
                continue  # a worker of another layout, or one still creating its file
            values: memoryview[float] = memoryview(data).cast("d")
            yield _alive(int(values[_PID])), values

    def collect(self) -> Iterable[Metric]:
        files = list(self._files())
        total = [0.0] * SLOTS
        for _alive_now, values in files:
            for i in range(SLOTS):
                total[i] += values[i]
        live = [values for alive, values in files if alive]
        model, version = self.labels
        names, base = ["model", "version"], [model, version]
        info = InfoMetricFamily("modelpack_release", "The release this runtime serves.")
        info.add_metric([], self.release)
        yield info
        requests = CounterMetricFamily(
            "modelpack_requests", "HTTP requests answered.", labels=[*names, "endpoint", "status"]
        )
        statuses = [str(s) for s in STATUSES] + ["other"]
        for e, endpoint in enumerate(ENDPOINTS):
            for s, status in enumerate(statuses):
                count = total[_REQUESTS + e * _S + s]
                if count:
                    requests.add_metric([*base, endpoint, status], count)
        yield requests
        yield _histogram(
            "modelpack_request_duration_seconds",
            "Time from the request's arrival at the app to its answer.",
            total, _DURATION, DURATION_BUCKETS, base,
        )  # fmt: skip
        yield _histogram(
            "modelpack_request_size_bytes", "Request body sizes.", total, _REQ_SIZE, SIZE_BUCKETS, base
        )
        yield _histogram(
            "modelpack_response_size_bytes", "Response body sizes.", total, _RESP_SIZE, SIZE_BUCKETS, base
        )
        errors = CounterMetricFamily("modelpack_errors", "Failed requests by kind.", labels=[*names, "kind"])
        for k, kind in enumerate(ERROR_KINDS):
            errors.add_metric([*base, kind], total[_ERRORS + k])
        yield errors
        inflight = GaugeMetricFamily("modelpack_requests_in_flight", "Requests being handled.", labels=names)
        inflight.add_metric(base, sum(values[_INFLIGHT] for values in live))
        yield inflight
        load = GaugeMetricFamily(
            "modelpack_model_load_seconds",
            "Seconds the model took to load (the slowest worker).",
            labels=names,
        )
        load.add_metric(base, max(values[_LOAD] for values in live))
        yield load
        workers = GaugeMetricFamily("modelpack_workers", "Worker processes serving.", labels=names)
        workers.add_metric(base, len(live))
        yield workers
        yield from _process_metrics([int(values[_PID]) for values in live])

    def close(self) -> None:
        """Unmaps this worker's file (it stays: its counters keep counting in the sum)."""
        if self._map is not None and self._shared is not None:
            self.publish()
            self._shared.release()
            self._map.close()
            self._map = None


class NoMetrics(Metrics):
    """`metrics: false`: nothing counted, /metrics is a 404."""

    def started(self) -> None:
        pass

    def finished(self, path: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        pass

    def error(self, kind: str) -> None:
        pass

    def exposition(self) -> bytes:
        return b""


def _histogram(
    name: str, doc: str, total: list[float], at: int, buckets: tuple[float, ...], base: list[str]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["model", "version", "endpoint"])
    width = _hist_width(buckets)
    bounds = [*(floatToGoString(b) for b in buckets), "+Inf"]  # type: ignore[no-untyped-call]
    for e, endpoint in enumerate(ENDPOINTS):
        start = at + e * width
        counts = total[start : start + len(buckets) + 1]
        if not any(counts):
            continue
        cumulative, running = [], 0.0
        for bound, count in zip(bounds, counts, strict=True):
            running += count
            cumulative.append((bound, running))
        family.add_metric([*base, endpoint], cumulative, sum_value=total[start + len(buckets) + 1])
    return family


def _process_metrics(pids: list[int]) -> Iterator[Metric]:
    """prometheus_client's process metrics for each live worker, told apart by a `pid` label."""
    families: dict[str, Metric] = {}
    for pid in pids:
        collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
        for family in collector.collect():
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
            for sample in family.samples:
                merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
    yield from families.values()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def classify(path: str, model_prefix: str, versioned: str | None) -> str:
    """The `endpoint` label of a path: a closed set, so a client cannot grow the series by its URLs."""
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed
    for prefix in (model_prefix, versioned):
        if prefix is None or not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        if rest in ("", "/"):
            return "model_metadata"
        if rest in ("/infer", "/infer/"):
            return "infer"
        if rest in ("/ready", "/ready/"):
            return "model_ready"
    return "other"


_FIXED = {
    "/v2/health/live": "server_live",
    "/v2/health/ready": "server_ready",
    "/v2": "server_metadata",
    "/metadata": "metadata",
    "/metrics": "metrics",
}
