"""The deployment spec (values a spec cannot have, its stored JSON) and the state every target follows,
derived from an environment's events: canary, abort, finish, and a tag moved outside modelpack."""

from __future__ import annotations

import pytest

from modelpack.deploy.spec import DeploySpec, check, parse_duration, parse_steps, updated
from modelpack.deploy.state import state_of
from modelpack.environment.history import Event, resolve
from modelpack.errors import ContentError, UsageError

A, B, C = ("sha256:" + c * 64 for c in "abc")


def _chain(*steps: tuple[str, str | None, str, int | None]) -> list[Event]:
    events, prev = [], None
    for i, (action, frm, to, weight) in enumerate(steps):
        digest = f"sha256:{i:064x}"
        events.append(
            Event(
                "prod",
                action,
                f"v{i}",
                frm,
                to,
                "ci",
                f"2026-12-06T10:00:{i:02d}.000000Z",
                previous_event=prev,
                digest=digest,
                weight=weight,
            )
        )
        prev = digest
    return events


def test_spec_round_trips_through_its_stored_json() -> None:
    spec = updated(DeploySpec("prod"), strategy="canary", canary_steps=(5, 25, 100), pause_s=12.5, port=9000)
    import json

    back = DeploySpec.from_json(json.loads(spec.payload()), "sha256:" + "d" * 64)
    assert back == spec and back.digest == "sha256:" + "d" * 64


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"strategy": "rolling"}, "--strategy 'rolling'"),
        ({"target": "nomad"}, "--target 'nomad'"),
        ({"canary_steps": (50, 10, 100)}, "ascending"),
        ({"canary_steps": (10, 50)}, "ending with 100"),
        ({"canary_steps": (0, 100)}, "percents from 1 to 100"),
        ({"port": 70000}, "--port 70000"),
        ({"keep_warm_s": -1.0}, "--keep-warm"),
        ({"network": "bad name"}, "--network"),
    ],
)
def test_a_spec_value_out_of_range_is_one_line(change: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError) as e:
        updated(DeploySpec("prod"), **change)
    assert needle in e.value.message and "\n" not in e.value.message


def test_a_stored_spec_written_by_hand_is_checked_like_one_set_by_the_cli() -> None:
    with pytest.raises(ContentError, match="ascending"):
        DeploySpec.from_json({"env": "prod", "canarySteps": [90, 10, 100]}, "sha256:" + "e" * 64)
    with pytest.raises(ContentError, match="malformed"):
        DeploySpec.from_json({"target": "docker"}, None)


def test_durations_and_steps_parse() -> None:
    assert parse_duration("30s", "--pause") == 30.0
    assert parse_duration("10m", "--keep-warm") == 600.0
    assert parse_duration("250ms", "--drain") == 0.25
    assert parse_duration("7", "--pause") == 7.0
    assert parse_steps("10, 50,100") == (10, 50, 100)
    with pytest.raises(UsageError, match="a duration"):
        parse_duration("soon", "--pause")
    with pytest.raises(UsageError, match="comma-separated"):
        parse_steps("ten")
    assert check(DeploySpec("prod")) == DeploySpec("prod")


def test_canary_then_finish_then_rollback() -> None:
    events = _chain(("promote", None, A, None), ("canary", A, B, 10), ("canary", A, B, 50))
    st = state_of("prod", resolve("prod", events), A)
    assert st.stable == A and st.canary is not None and st.canary.digest == B
    assert st.weights() == {A: 50, B: 50}
    finished = _chain(
        *[(e.action, e.from_digest, e.to_digest, e.weight) for e in events], ("promote", A, B, None)
    )
    st = state_of("prod", resolve("prod", finished), B)
    assert st.weights() == {B: 100} and st.canary is None and st.stable_version == "v3"


def test_abort_ends_the_canary_and_the_stable_keeps_every_request() -> None:
    events = _chain(("promote", None, A, None), ("canary", A, B, 10), ("abort", B, A, None))
    st = state_of("prod", resolve("prod", events), A)
    assert st.weights() == {A: 100} and st.canary is None and not st.moved_outside


def test_a_tag_moved_outside_modelpack_wins_and_drops_the_canary() -> None:
    events = _chain(("promote", None, A, None), ("canary", A, B, 30))
    st = state_of("prod", resolve("prod", events), C)
    assert st.weights() == {C: 100} and st.moved_outside
    gone = state_of("prod", resolve("prod", events), None)
    assert gone.weights() == {} and gone.moved_outside
    assert state_of("prod", resolve("prod", []), None).weights() == {}


def test_a_canary_recorded_against_another_stable_is_ignored() -> None:
    events = _chain(("promote", None, A, None), ("canary", C, B, 30))
    assert state_of("prod", resolve("prod", events), A).weights() == {A: 100}
