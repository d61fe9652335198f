"""Build tar archives with hostile members (links out, devices, fifos) that tarfile would not write itself."""

from __future__ import annotations

import io
import tarfile

_TYPES = {
    "sym": tarfile.SYMTYPE,
    "hard": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "dir": tarfile.DIRTYPE,
}


def hostile_tar(*members: tuple[str, str, bytes | str]) -> bytes:
    """Members are (name, kind, payload): kind "file" takes bytes; links take their target as payload."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = _TYPES[kind]
            if kind in ("chr", "blk"):
                info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
            info.linkname = str(payload)
            tf.addfile(info)
    return buf.getvalue()
