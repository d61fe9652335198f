"""Running the real `modelpack` process on a pseudo-terminal, as a person at a keyboard does: what it
prints there, and answers typed at its prompts (getpass reads the controlling terminal, not stdin)."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Session:
    output: str
    status: int


def on_terminal(
    args: list[str], env: Mapping[str, str], answers: Mapping[bytes, bytes], timeout: float = 120.0
) -> Session:
    """Runs `python -m modelpack ARGS` with a pty as its controlling terminal; each `answers` key, once
    seen in the output, is answered (once) with its value and a newline."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes modelpack
        os.execve(sys.executable, [sys.executable, "-m", "modelpack", *args], dict(env))
    out, pending, deadline = b"", dict(answers), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
            for prompt in [p for p in pending if p in out]:
                # getpass turns echo off after printing its prompt, flushing what was typed before: wait
                # for the terminal to go quiet, as a person reading the prompt would
                time.sleep(0.5)
                os.write(fd, pending.pop(prompt) + b"\n")
        else:
            os.kill(pid, 9)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return Session(out.decode(errors="replace"), os.waitstatus_to_exitcode(status))
