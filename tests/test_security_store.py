"""The store and the history hold against hostile content and concurrent writers: a forged referrers index,
gc racing a build, a damaged root, a full disk, a store path that points at someone else's folder."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import replace

from clirun import script
from fixtures.registry import RegistryProcess
from registry_helpers import client_for
from test_promote import attach_report, make_release, runtime

from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, parse
from modelpack.oci.target import RawManifest
from modelpack.registry.client import RegistryRepository
from modelpack.registry.referrers import fallback_tag
from modelpack.release.history import anchor
from modelpack.release.place import Place
from modelpack.release.promote import promote

_EV = "dev.modelpack.event."
_MEMORY_LIMIT = 2 * 1024**3  # a runaway loop hits this long before it hurts the machine


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))


def run_bounded(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The console script with an address-space cap and a deadline: old code looped here forever."""
    env = {k: v for k, v in os.environ.items() if k != "MODELPACK_VERBOSE"}
    env.update({"DOCKER_CONFIG": os.devnull, "MODELPACK_ACTOR": "ci-bot", "MALLOC_ARENA_MAX": "2"})
    return subprocess.run(
        [str(script()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        preexec_fn=_limited,
    )


# -- item 3: history, rollback and promote terminate and tell the payload's truth --------------------------


def _forge(target: RegistryRepository, env: str, evil: str) -> Sequence[str]:
    """Rewrite the fallback referrers index of `env`'s anchor as anyone with push rights can: every entry's
    `who` and `to_digest` changed, and the newest event listed twice, once naming itself as previous."""
    tag = fallback_tag(anchor(env).digest)
    index = parse(target.get_manifest(tag).raw)
    assert isinstance(index, Index) and len(index.manifests) == 2
    lies = {_EV + "who": "mallory", _EV + "to_digest": evil}
    first, second = (replace(d, annotations={**d.annotations, **lies}) for d in index.manifests)
    looping = replace(second, annotations={**second.annotations, _EV + "previous_event": second.digest})
    forged = Index(manifests=(first, second, looping, second))
    raw = canonical.dumps(forged.to_json())
    target.put_manifest(tag, RawManifest(raw, mt.OCI_INDEX, digests.of_bytes(raw)))
    return [d.digest for d in index.manifests]


def test_a_forged_fallback_index_neither_loops_nor_lies(registry: RegistryProcess, repo: str) -> None:
    with client_for(registry.host) as client:
        target = RegistryRepository(client, repo)
        place = Place(target, None, f"{registry.host}/{repo}")
        releases = {v: make_release(target, v, v) for v in ("1.0.0", "1.1.0", "6.6.6")}
        for v in ("1.0.0", "1.1.0"):
            attach_report(target, releases[v])
            promote(place, v, "prod", runtime=runtime())
        events = _forge(target, "prod", evil=releases["6.6.6"].digest)
    ref = f"{registry.host}/{repo}"

    shown = run_bounded("history", ref, "prod", "--json")
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)["events"]
    assert [e["eventDigest"] for e in listed] == events[::-1]  # each once, newest first
    assert [e["toDigest"] for e in listed] == [releases["1.1.0"].digest, releases["1.0.0"].digest]
    assert {e["who"] for e in listed} == {"alice@laptop"}  # the payload's, not the index's "mallory"
    assert all(e["status"] == "in effect" for e in listed)

    rolled = run_bounded("rollback", ref, "prod", "--reason", "incident", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["toDigest"] == releases["1.0.0"].digest  # not the forged 6.6.6
    with client_for(registry.host) as client:
        assert RegistryRepository(client, repo).get_manifest("prod").digest == releases["1.0.0"].digest
