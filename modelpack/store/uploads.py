"""Upload sessions kept beside the store, so a push killed half-way continues on the next run.

One small JSON file per blob digest under `<store>/uploads/`: the registry and repository it was going
to, the session's path (the registry's upload Location without scheme, host or credentials: it is only
ever resolved against the registry's own origin) and the bytes the registry confirmed. Written whole
(atomic_write); anything unreadable reads as "no session", so the push simply starts over.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from modelpack.oci import digest as digests
from modelpack.store.atomic import atomic_write

UPLOADS_DIR = "uploads"
_MAX_RECORD = 16 * 1024


@dataclass(frozen=True)
class UploadSession:
    where: str  # registry/repository
    path: str  # the upload Location's path and query, on the registry's own origin
    offset: int  # bytes the registry confirmed


class UploadSessions:
    def __init__(self, store_root: Path) -> None:
        self.root = Path(store_root) / UPLOADS_DIR

    def _file(self, digest: str) -> Path:
        return self.root / f"{digests.hex_part(digests.validate(digest))}.json"

    def load(self, where: str, digest: str) -> UploadSession | None:
        try:
            with open(self._file(digest), "rb") as f:
                raw = json.loads(f.read(_MAX_RECORD + 1)[:_MAX_RECORD])
            session = UploadSession(str(raw["where"]), str(raw["path"]), int(raw["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if session.where != where or not session.path.startswith("/") or session.offset < 0:
            return None
        return session

    def save(self, digest: str, session: UploadSession) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"where": session.where, "path": session.path, "offset": session.offset}
        atomic_write(self._file(digest), json.dumps(record).encode())

    def drop(self, digest: str) -> None:
        with contextlib.suppress(OSError):
            self._file(digest).unlink(missing_ok=True)
