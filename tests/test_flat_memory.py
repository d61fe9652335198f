"""Memory flat in the blob's size (issue 26 item 3): a pull and a push of 96 MiB, each in a fresh child,
peak no more than a few MiB above the same at 32 MiB (both past the range window). The 8 GiB figures are
bench/bigmodel_bench.py's; this is the CI guard that nothing starts holding a blob, or a growing share of
it, in memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fixtures.registry import RegistryProcess
from support.registry_helpers import client_for, push_artifact

from modelpack.registry import RegistryRepository

CHILD = r"""
import json, sys
from modelpack.oci.copy import copy_graph
from modelpack.registry import RangeOptions, RegistryRepository
from modelpack.registry.transport import RegistryClient
from modelpack.store.layout import LayoutStore

op, host, repo, tag, store = sys.argv[1:6]
client = RegistryClient(host, credentials=lambda _: None)
# parallel 1 MiB ranges whatever the probe's speed: the path whose buffers could grow
ranges = RangeOptions(min_size=2 << 20, piece=1 << 20, probe=1 << 20, one_stream_rate=1e30)
remote = RegistryRepository(client, repo, ranges=ranges)
if op == "pull":
    copy_graph(remote, LayoutStore(store), tag)
else:
    copy_graph(LayoutStore(store), RegistryRepository(client, repo + "-copy"), tag)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) pytest process that forked us
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"peak": int(hwm.split()[1]) * 1024}))
"""


def _peak(*args: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout.splitlines()[-1])["peak"])


def test_pull_and_push_peak_memory_does_not_grow_with_the_blob(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    peaks: dict[tuple[str, int], int] = {}
    for mib in (32, 96):
        repo = f"flat/m{mib}"
        with client_for(registry.host) as client:
            push_artifact(RegistryRepository(client, repo), "v1", [os.urandom(mib << 20)])
        store = tmp_path / f"store-{mib}"
        peaks["pull", mib] = _peak("pull", registry.host, repo, "v1", str(store))
        peaks["push", mib] = _peak("push", registry.host, repo, "v1", str(store))
    for op in ("pull", "push"):
        grew = peaks[op, 96] - peaks[op, 32]
        assert grew < 16 << 20, f"{op}: peak RSS grew {grew >> 20} MiB for 64 MiB more blob ({peaks})"
