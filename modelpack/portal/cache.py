"""The portal's two caches: immutable bytes on disk by digest, and moving answers in memory for seconds.

What a digest names never changes, so the disk cache is never stale and needs no invalidation, only a
bound (the oldest entries go first). Tags, referrers and promotion history move; they are kept for a few
seconds only, so that one page's several reads, and a reload, share them while a promotion still shows
up on the next page a moment later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_TTL = 5.0


class DiskCache:
    """Bytes by key (a digest, or a digest plus a suffix) under `root`, at most `max_bytes` in all."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None

    def _path(self, key: str) -> Path:
        # keys come from registries: hashed, so no key can name a path outside the cache
        name = hashlib.sha256(key.encode()).hexdigest()
        return self.root / name[:2] / name

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:
            return  # one entry never pushes out most of the others
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers see the whole entry or none
        with self._lock:
            self._size = (self._size if self._size is not None else self._measure()) + len(data)
            if self._size > self.max_bytes:
                self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for p in self.root.glob("*/*"):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, p))
        return out

    def _measure(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self) -> None:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes * 3 // 4:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._size = total


class Memo:
    """Answers kept `ttl` seconds by key; concurrent askers of one key wait for one read."""

    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            now = self.clock()
            with self._lock:
                hit = self._values.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                value: T = hit[1]
                return value
            value = make()
            with self._lock:
                self._values[key] = (self.clock(), value)
                if len(self._values) > 4096:  # a crawler asking every sort: drop the stale ones
                    self._values = {k: v for k, v in self._values.items() if now - v[0] < self.ttl}
                    self._key_locks = {
                        k: lk for k, lk in self._key_locks.items() if k in self._values or lk.locked()
                    }
            return value
