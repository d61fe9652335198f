"""`env set | show` and `promote --canary` on a real registry, without an engine: the spec stored beside
the policy, its bad values refused in one line, and the canary's events as history shows them."""

from __future__ import annotations

import json

from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.places import attach_report, make_release

from modelpack.environment.place import Place
from modelpack.targets import Targets


def test_env_set_stores_the_spec_and_show_reads_it_back(
    registry: RegistryProcess, repo: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    dest = f"{registry.host}/{repo}"
    store = ["--store", str(tmp_path / "store")]
    shown = run_cli("env", "show", dest, "prod", "--json", *store)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["stored"] is False
    out = run_cli(
        "env",
        "set",
        dest,
        "prod",
        "--strategy",
        "canary",
        "--canary-steps",
        "5,25,100",
        "--pause",
        "45s",
        "--keep-warm",
        "2m",
        "--port",
        "9090",
        "--max-p99-ratio",
        "2",
        "--json",
        *store,
    )
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)["spec"]
    assert spec["canarySteps"] == [5, 25, 100] and spec["pauseSeconds"] == 45.0
    assert spec["keepWarmSeconds"] == 120.0 and spec["port"] == 9090 and spec["bounds"]["maxP99Ratio"] == 2.0
    # a second set changes only what it names
    run_cli("env", "set", dest, "prod", "--port", "9191", *store)
    shown = json.loads(run_cli("env", "show", dest, "prod", "--json", *store).stdout)
    assert shown["stored"] and shown["spec"]["port"] == 9191 and shown["spec"]["canarySteps"] == [5, 25, 100]
    human = run_cli("env", "show", dest, "prod", *store)
    assert "5,25,100 (pause 45 s)" in human.stdout


def test_env_set_refuses_bad_values_in_one_line(registry: RegistryProcess, repo: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = f"{registry.host}/{repo}"
    for args, needle in (
        (["--canary-steps", "50,10"], "ascending"),
        (["--pause", "soon"], "a duration such as"),
        (["--strategy", "rolling"], "choose one of blue-green, canary"),
        (["--port", "0"], "a TCP port is 1-65535"),
    ):
        out = run_cli("env", "set", dest, "prod", *args, "--store", str(tmp_path / "s"))
        assert out.returncode == 2 and needle in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert (
        json.loads(run_cli("env", "show", dest, "prod", "--json", "--store", str(tmp_path / "s")).stdout)[
            "stored"
        ]
        is False
    )


def test_canary_events_in_history_and_state(registry: RegistryProcess, repo: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dest = f"{registry.host}/{repo}"
    store = ["--store", str(tmp_path / "store")]
    with Targets(store_path=tmp_path / "store") as targets:
        place = Place.of(targets.open(dest))
        for tag, version in (("1.0.0", "1.0.0"), ("2.0.0", "2.0.0")):
            attach_report(place.target, make_release(place.target, tag, version))
    assert run_cli("promote", f"{dest}:1.0.0", "prod", *store).returncode == 0
    first = run_cli("promote", f"{dest}:2.0.0", "prod", "--canary", "10", "--json", *store)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["action"] == "canary" and json.loads(first.stdout)["weight"] == 10
    same = run_cli("promote", f"{dest}:1.0.0", "prod", "--canary", "10", *store)
    assert same.returncode == 1 and "would split traffic with itself" in same.stderr
    shown = json.loads(run_cli("env", "show", dest, "prod", "--json", *store).stdout)["state"]
    assert shown["stableVersion"] == "1.0.0" and shown["canary"]["weight"] == 10
    # the tag never moved during the canary
    tags = json.loads(run_cli("history", dest, "prod", "--json", *store).stdout)
    assert tags["movedOutside"] is False and tags["events"][0]["current"] is True
    abort = run_cli("rollback", dest, "prod", "--json", *store)
    assert json.loads(abort.stdout)["action"] == "abort"
    shown = json.loads(run_cli("env", "show", dest, "prod", "--json", *store).stdout)["state"]
    assert shown["canary"] is None
    # after an abort, a rollback is a rollback again: nothing was named before 1.0.0
    again = run_cli("rollback", dest, "prod", *store)
    assert again.returncode == 1 and "nothing to roll back to" in again.stderr
