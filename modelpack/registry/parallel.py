"""Run blob transfers side by side (default 4), stopping at the first failure.

Progress callbacks are called from the worker threads; the CLI's renderer must be thread-safe (rich is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, TypeVar

from modelpack.oci.model import Descriptor
from modelpack.oci.target import BlobCopy, ProgressFn, no_progress
from modelpack.registry.upload import BlobOpener

if TYPE_CHECKING:
    from modelpack.registry.client import RegistryRepository

T = TypeVar("T")
DEFAULT_WORKERS = 4


def run_parallel(tasks: Sequence[Callable[[], T]], workers: int = DEFAULT_WORKERS) -> list[T]:
    """Results in task order. The first error is raised once running tasks finish; queued ones never start."""
    if not tasks:
        return []
    if workers <= 1 or len(tasks) == 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(
        max_workers=min(workers, len(tasks)), thread_name_prefix="modelpack-xfer"
    ) as pool:
        futures: list[Future[T]] = [pool.submit(task) for task in tasks]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                error = future.exception()
                assert error is not None
                raise error
        return [future.result() for future in futures]


def push_blobs(
    repo: RegistryRepository,
    blobs: Sequence[tuple[Descriptor, BlobOpener]],
    progress: ProgressFn = no_progress,
    *,
    mount_from: str | None = None,
    workers: int = DEFAULT_WORKERS,
) -> list[BlobCopy]:
    """Upload blobs concurrently; each is HEAD-skipped, mounted from `mount_from`, or uploaded."""
    tasks = [
        (lambda d=desc, o=opener: repo.push_blob(d, o, progress, mount_from=mount_from))
        for desc, opener in blobs
    ]
    return run_parallel(tasks, workers)
