"""Hash once: a persisted cache from a file's stat identity to what was computed from its bytes.

An unchanged file keeps its (size, mtime_ns, inode, ctime_ns), so a 10 GB weight file is hashed on the first
build and never again; any write, truncate, replace or chmod changes the identity and misses the cache.
Keys are lists of JSON values that embed those identities (`file_key`), so callers can cache composite
results too: "the deterministic tar of these unchanged files is digest D, size N".

Storage is SQLite (stdlib) in WAL mode: two processes writing at once serialise on its lock, and a crash
leaves the previous committed state. The cache is disposable: a corrupt database is moved aside and rebuilt.

Racy entries: timestamps are coarse (a kernel tick), so a file rewritten with the same size within the tick
of our last look would keep its identity. Like git's "racily clean" rule, a value is only stored when every
file involved was last modified at least `RACY_NS` before the computation finished; such a later write must
then carry a newer mtime.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat as stat_mode
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from modelpack.errors import InputError, StoreError
from modelpack.oci import canonical, digest
from modelpack.oci.filestat import FileStat, file_key, shown

RACY_NS = 100_000_000  # 100 ms: well above a kernel timestamp tick (1-10 ms)
Clock = Callable[[], int]  # wall-clock nanoseconds, comparable with st_mtime_ns


class StatCache:
    """`get`/`put` JSON values under keys that embed stat identities; `file_digest` hashes on a miss only."""

    def __init__(self, path: Path | str, *, clock: Clock = time.time_ns) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError:
            # Not a database (truncated, overwritten): the cache only saves time, so start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{os.getpid()}")
            os.replace(self.path, aside)
            try:
                return self._connect()
            except sqlite3.Error as e:
                raise StoreError(f"stat cache {self.path} cannot be opened: {e}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, at INTEGER)"
            )
        except sqlite3.Error:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StatCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get(self, key_parts: Sequence[Any]) -> Any | None:
        key = canonical.dumps(list(key_parts)).decode()
        try:
            with self._lock:
                row = self._db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None  # a cache that cannot answer is a miss, never a failure
        return json.loads(row[0]) if row else None

    def put(self, key_parts: Sequence[Any], value: Any, *, stats: Iterable[FileStat] = ()) -> bool:
        """Store `value`; skipped (returns False) when a file in `stats` is racily recent (module doc)."""
        now = self._clock()
        if any(s.mtime_ns >= now - RACY_NS or s.ctime_ns >= now - RACY_NS for s in stats):
            return False
        key = canonical.dumps(list(key_parts)).decode()
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO entries (key, value, at) VALUES (?, ?, ?)",
                    (key, canonical.dumps(value).decode(), now // 1_000_000_000),
                )
        except sqlite3.Error:
            return False
        return True

    def file_digest(self, path: Path | str) -> tuple[str, int]:
        """sha256 digest and size of a file; read only when its stat identity is not in the cache."""
        before = _stat_regular(path)
        key = ["file-sha256", *file_key(path, before)]
        hit = self.get(key)
        if isinstance(hit, list) and len(hit) == 2:
            return str(hit[0]), int(hit[1])
        with open(path, "rb") as f:
            opened = FileStat.from_stat(os.fstat(f.fileno()))
            found, size = digest.of_stream(f)
            after = FileStat.from_stat(os.fstat(f.fileno()))
        if not (before == opened == after) or size != after.size:
            raise InputError(
                f"{shown(path)} changed while it was read", hint="wait until whatever writes it has finished"
            )
        self.put(key, [found, size], stats=[after])
        return found, size


def _stat_regular(path: Path | str) -> FileStat:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{shown(path)} does not exist") from None
    except OSError as e:
        raise InputError(f"{shown(path)} cannot be read: {e.strerror}") from None
    if not stat_mode.S_ISREG(st.st_mode):
        raise InputError(f"{shown(path)} is not a regular file")
    return FileStat.from_stat(st)
