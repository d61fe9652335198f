"""The history's data: events and their annotations, the anchor, resolving one chain from racing writers,
who made a move (CI identity, never a secret), and `modelpack history` on the command line."""

from __future__ import annotations

import json
import os

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main as run_cli  # in process: the console script is proven in test_cli
from support.places import attach_report, make_release
from support.registry_helpers import client_for

from modelpack.environment.actor import who
from modelpack.environment.history import Event, anchor, format_when, resolve
from modelpack.oci import mediatypes as mt

D = {c: "sha256:" + c * 64 for c in "0123456789abcdef"}


def ev(digest: str, when: str, previous: str | None, to: str = D["a"], version: str = "1.0.0") -> Event:
    return Event("prod", "promote", version, None, to, "me", when, previous_event=previous, digest=digest)


def test_event_round_trips_through_annotations_and_payload() -> None:
    e = Event(
        "prod", "rollback", "1.2.0", D["1"], D["2"], "ci", format_when(1.5), "latency", True, D["3"], D["4"]
    )
    ann = e.annotations()
    assert ann["dev.modelpack.env"] == "prod" and ann[mt.ANN_VERSION] == "1.2.0"
    assert ann["dev.modelpack.event.forced"] == "true" and ann[mt.ANN_CREATED] == e.when
    assert Event.from_annotations(ann, D["4"]) == e
    assert Event.from_json(json.loads(e.payload()), D["4"]) == e
    first = Event("prod", "promote", "1.0.0", None, D["2"], "ci", format_when(0))
    assert "dev.modelpack.event.from_digest" not in first.annotations()  # no empty values
    assert Event.from_annotations(first.annotations(), D["5"]) == first
    assert Event.from_annotations({"dev.modelpack.env": "prod"}, D["5"]) is None  # incomplete: not ours


def test_when_strings_sort_as_times() -> None:
    times = [0.0, 0.000001, 0.5, 1.999999, 59.9999996, 1_790_000_000.25, 1_790_000_000.250001]
    texts = [format_when(t) for t in times]
    assert texts == sorted(texts) and len(set(texts)) == len(texts)
    assert format_when(1_790_000_000.25) == "2026-09-21T14:13:20.250000Z"


def test_anchor_is_deterministic_per_env_and_name() -> None:
    assert anchor("prod").digest == anchor("prod").digest
    assert len({anchor("prod").digest, anchor("staging").digest, anchor("prod", "iris").digest}) == 3


def test_resolve_follows_one_chain_and_supersedes_racers() -> None:
    e1 = ev(D["1"], "2026-01-01T00:00:00.000000Z", None)
    e2 = ev(D["2"], "2026-01-02T00:00:00.000000Z", D["1"])
    racer_late = ev(D["3"], "2026-01-02T00:00:00.000002Z", D["1"])  # same head as e2, later
    after_loser = ev(D["4"], "2026-01-03T00:00:00.000000Z", D["3"])  # followed the loser: not in effect
    e5 = ev(D["5"], "2026-01-04T00:00:00.000000Z", D["2"])
    history = resolve("prod", [e5, after_loser, racer_late, e2, e1])
    assert [e.digest for e in history.chain] == [D["1"], D["2"], D["5"]]
    assert {e.digest for e in history.superseded} == {D["3"], D["4"]}
    assert history.head == e5 and history.is_in_effect(D["2"]) and not history.is_in_effect(D["3"])
    listed = history.newest_first()
    assert [e.digest for e, _ in listed] == [D["5"], D["4"], D["3"], D["2"], D["1"]]
    assert dict((e.digest, live) for e, live in listed)[D["3"]] is False


def test_resolve_ties_on_when_break_by_digest_the_same_for_every_reader() -> None:
    when = "2026-01-02T00:00:00.000000Z"
    a, b = ev(D["b"], when, None), ev(D["a"], when, None)
    assert resolve("prod", [a, b]).chain == (b,)
    assert resolve("prod", [b, a]).chain == (b,)


def test_an_event_following_an_unknown_one_competes_as_a_root() -> None:
    orphan = ev(D["2"], "2026-01-05T00:00:00.000000Z", D["9"])
    root = ev(D["1"], "2026-01-01T00:00:00.000000Z", None)
    assert resolve("prod", [orphan, root]).chain == (root,)
    assert resolve("prod", [orphan]).chain == (orphan,)


def test_last_move_and_ever_moved() -> None:
    e1 = ev(D["1"], "2026-01-01T00:00:00.000000Z", None, to=D["a"])
    e2 = ev(D["2"], "2026-01-02T00:00:00.000000Z", D["1"], to=D["b"])
    e3 = ev(D["3"], "2026-01-03T00:00:00.000000Z", D["2"], to=D["a"])
    history = resolve("prod", [e1, e2, e3])
    assert history.last_move_to(D["a"]) == e3 and history.last_move_to(D["c"]) is None
    assert history.ever_moved_to(D["b"]) and not history.ever_moved_to(D["c"])


def test_who_reads_ci_identity_and_never_a_secret() -> None:
    secret = "ghp_" + "x" * 36
    github = {
        "GITHUB_ACTOR": "octocat",
        "GITHUB_WORKFLOW": "release",
        "GITHUB_RUN_ID": "42",
        "GITHUB_REPOSITORY": "acme/iris",
        "GITHUB_TOKEN": secret,
        "CI_JOB_TOKEN": secret,
    }
    found = who(github)
    assert found == "octocat (github actions: acme/iris release run 42)" and secret not in found
    assert (
        who({"GITLAB_USER_LOGIN": "ana", "CI_JOB_ID": "7", "CI_JOB_TOKEN": secret})
        == "ana (gitlab ci: job 7)"
    )
    assert who({}, user=lambda: "bob", host=lambda: "laptop") == "bob@laptop"
    assert who({"MODELPACK_ACTOR": "release-bot", "GITHUB_ACTOR": "x"}) == "release-bot"


@pytest.mark.slow
def test_history_cli_lists_newest_first_and_marks_the_current_one(
    registry: RegistryProcess, repo: str
) -> None:
    """The console script end to end: promote twice, roll back, then read the trail as JSON and as text."""
    from modelpack.registry.client import RegistryRepository

    with client_for(registry.host) as client:
        target = RegistryRepository(client, repo)
        releases = {v: make_release(target, v, v) for v in ("1.0.0", "1.1.0")}
        for r in releases.values():
            attach_report(target, r)
    ref = f"{registry.host}/{repo}"
    env = {"MODELPACK_ACTOR": "ci-bot", "DOCKER_CONFIG": os.devnull}
    for v in ("1.0.0", "1.1.0"):
        done = run_cli("promote", f"{ref}:{v}", "prod", "--reason", f"ship {v}", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == releases[v].digest
    done = run_cli("rollback", ref, "prod", "--reason", "bad p95", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["toDigest"] == releases["1.0.0"].digest
    shown = run_cli("history", ref, "prod", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["current"] == releases["1.0.0"].digest
    assert [(e["action"], e["version"], e["current"]) for e in doc["events"]] == [
        ("rollback", "1.0.0", True),
        ("promote", "1.1.0", False),
        ("promote", "1.0.0", False),
    ]
    assert all(e["who"] == "ci-bot" and e["status"] == "in effect" for e in doc["events"])
    text = run_cli("history", ref, "prod", env=env)
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if line.strip()]
    assert "rollback" in lines[1] and lines[1].lstrip().startswith("*") and "bad p95" in lines[1]
    assert releases["1.1.0"].digest.split(":")[1][:12] in lines[1]  # from -> to, short digests
    refused = run_cli("promote", f"{ref}:1.1.0", "1.0", env=env)
    assert refused.returncode == 2 and refused.stderr.startswith(
        "error: environment '1.0' looks like a version"
    )
    missing = run_cli("promote", f"{ref}:9.9.9", "prod", env=env)
    assert (
        missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
