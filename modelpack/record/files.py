"""Reading a small input file the user named (packfile, lockfile, metrics, params): bounded, and every
failure an InputError that names the file, so a wrong path never reads gigabytes or shows a traceback."""

from __future__ import annotations

from pathlib import Path

from modelpack.errors import InputError


def read_bounded(
    path: Path,
    *,
    where: str,
    limit: int,
    what: str,
    missing: str = "no such file",
    hint: str | None = None,
) -> bytes:
    """At most `limit` bytes of `path`; `what` names the expected file in messages ("a lockfile").
    Reads limit + 1 bytes at most, so a huge file (a wrong path) is refused without being read."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{where}: {missing}", hint=hint) from None
    except IsADirectoryError:
        raise InputError(f"{where}: is a directory, expected {what}") from None
    except OSError as e:
        raise InputError(f"{where}: cannot read: {e.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{where}: larger than {limit >> 20} MiB; is this really {what}?")
    return data
