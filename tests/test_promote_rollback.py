"""rollback on the real registry, a layout and the local store: to the previous entry, to a named version,
refusals that change nothing, the trail it leaves, and the tag read back."""

from __future__ import annotations

import pytest
from support.places import Kind, attach_report, event_count, make_release, runtime, tag_digest

from modelpack.environment.history import load_history
from modelpack.environment.place import Place
from modelpack.environment.policy import Policy, parse_requirements, write_policy
from modelpack.environment.promote import Runtime, promote, rollback
from modelpack.errors import PromotionError, UsageError


def _promoted(place: Place, versions: list[str], rt: Runtime) -> dict[str, str]:
    digests = {}
    for v in versions:
        release = make_release(place.target, v, v)
        attach_report(place.target, release)
        digests[v] = release.digest
        promote(place, v, "prod", runtime=rt)
    return digests


def test_rollback_without_version_goes_to_the_entry_before_the_current_one(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0", "1.1.0", "1.2.0"], rt)
    result = rollback(place, "prod", reason="p95 regression", runtime=rt)
    assert tag_digest(place, "prod") == d["1.1.0"]
    assert result.changed and result.event.action == "rollback" and result.event.version == "1.1.0"
    assert any("checks no test report" in n for n in result.notes)
    history = load_history(place.target, "prod", place.name)
    head = history.head
    assert head is not None and head.digest == result.event.digest
    assert (head.from_digest, head.to_digest, head.reason) == (d["1.2.0"], d["1.1.0"], "p95 regression")
    assert len(history.chain) == 4 and not history.superseded


def test_rollback_to_a_named_version(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0", "1.1.0", "1.2.0"], rt)
    result = rollback(place, "prod", "1.0.0", runtime=rt)
    assert tag_digest(place, "prod") == d["1.0.0"]
    assert not any(n.startswith("warning") for n in result.notes)  # 1.0.0 was promoted to prod before


def test_rollback_to_a_version_never_run_is_refused_without_force_and_recorded_with_it(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0"], rt)
    never = make_release(place.target, "0.9.0", "0.9.0")  # never in prod, no test report
    with pytest.raises(PromotionError, match=r"prod never ran it .*nothing was changed") as e:
        rollback(place, "prod", "0.9.0", runtime=rt)
    assert "modelpack promote" in (e.value.hint or "") and "--force --reason" in (e.value.hint or "")
    assert tag_digest(place, "prod") == d["1.0.0"] and event_count(place, "prod") == 1
    with pytest.raises(UsageError, match="--force needs --reason"):
        rollback(place, "prod", "0.9.0", force=True, runtime=rt)
    forced = rollback(place, "prod", "0.9.0", force=True, reason="hotfix again", runtime=rt)
    assert tag_digest(place, "prod") == never.digest
    head = load_history(place.target, "prod", place.name).head
    assert head is not None and head.forced and (head.action, head.reason) == ("rollback", "hotfix again")
    assert [(c.kind, c.ok) for c in head.evidence] == [("test", False)]  # no report: recorded as forced
    assert any("never ran 0.9.0" in n for n in forced.notes)
    back = rollback(place, "prod", runtime=rt)  # the undo stack stays unconditional
    assert back.changed and tag_digest(place, "prod") == d["1.0.0"]


def test_rollback_to_a_version_never_run_meets_the_policy_as_promote_does(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0"], rt)
    make_release(place.target, "0.9.0", "0.9.0")  # untested
    policy = Policy("prod", parse_requirements("test"), "ops@ci", "2026-12-01T00:00:00.000000Z")
    write_policy(place.target, policy, place.name)
    with pytest.raises(PromotionError, match="its policy requires what it lacks"):
        rollback(place, "prod", "0.9.0", force=True, reason="trying", runtime=rt)
    assert tag_digest(place, "prod") == d["1.0.0"] and event_count(place, "prod") == 1


def test_rollback_to_a_version_whose_tag_is_gone_goes_to_the_digest_history_recorded(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0", "1.1.0"], rt)
    place.target.delete_tag("1.0.0")
    result = rollback(place, "prod", "1.0.0", runtime=rt)
    assert tag_digest(place, "prod") == d["1.0.0"]
    assert any("1.0.0 no longer exists" in n for n in result.notes)


def test_rollback_to_a_version_never_run_and_without_a_tag_changes_nothing(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0", "1.1.0"], rt)
    before = load_history(place.target, "prod", place.name)
    with pytest.raises(PromotionError, match=r"does not exist and prod never ran it; nothing was changed"):
        rollback(place, "prod", "0.5.0", runtime=rt)
    assert tag_digest(place, "prod") == d["1.1.0"]
    assert load_history(place.target, "prod", place.name) == before


def test_rollback_is_an_undo_stack_not_a_toggle(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0", "1.1.0", "1.2.0"], rt)
    first = rollback(place, "prod", runtime=rt)
    assert tag_digest(place, "prod") == d["1.1.0"]
    assert any("undoing the promote of 1.2.0" in n for n in first.notes)
    planned = rollback(place, "prod", dry_run=True, runtime=rt)
    assert planned.event.to_digest == d["1.0.0"]  # never back to 1.2.0, just rolled away from
    assert any("back to 1.0.0" in n for n in planned.notes)
    rollback(place, "prod", runtime=rt)
    assert tag_digest(place, "prod") == d["1.0.0"]
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        rollback(place, "prod", runtime=rt)
    # a promotion after the undo pushes again: the next rollback undoes that one
    promote(place, "1.2.0", "prod", runtime=rt)
    rollback(place, "prod", runtime=rt)
    assert tag_digest(place, "prod") == d["1.0.0"]


def test_rollback_to_a_version_goes_to_what_the_environment_ran_even_if_the_tag_was_overwritten(
    kind: Kind,
) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0", "1.1.0"], rt)
    overwritten = make_release(place.target, "1.0.0", "1.0.0", weights=b"an untested rebuild of 1.0.0")
    assert overwritten.digest != d["1.0.0"]
    result = rollback(place, "prod", "1.0.0", runtime=rt)
    assert tag_digest(place, "prod") == d["1.0.0"]
    assert any("now names" in n and "the 1.0.0 that prod ran" in n for n in result.notes)
    assert not any("never promoted" in n for n in result.notes)


def test_rollback_after_the_first_promotion_has_nowhere_to_go(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0"], rt)
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        rollback(place, "prod", runtime=rt)
    assert tag_digest(place, "prod") == d["1.0.0"]
    assert event_count(place, "prod") == 1


def test_rollback_of_a_missing_environment(kind: Kind) -> None:
    place = kind.place
    make_release(place.target, "1.0.0", "1.0.0")
    with pytest.raises(PromotionError, match="does not exist: nothing to roll back"):
        rollback(place, "prod", runtime=runtime())


def test_rollback_dry_run_changes_nothing(kind: Kind) -> None:
    place, rt = kind.place, runtime()
    d = _promoted(place, ["1.0.0", "1.1.0"], rt)
    result = rollback(place, "prod", dry_run=True, runtime=rt)
    assert result.dry_run and not result.changed
    assert (result.event.from_digest, result.event.to_digest) == (d["1.1.0"], d["1.0.0"])
    assert tag_digest(place, "prod") == d["1.1.0"]
    assert event_count(place, "prod") == 2


def test_rollback_when_the_tag_was_moved_outside_modelpack(kind: Kind) -> None:
    """No event put the current digest there: the previous entry is unknown, so rollback asks for a version
    rather than guess; with one it works and notes the outside move."""
    place, rt = kind.place, runtime()
    _promoted(place, ["1.0.0", "1.1.0"], rt)
    outside = make_release(place.target, "prod", "hand-pushed")  # e.g. skopeo copy
    with pytest.raises(PromotionError, match="cannot tell what came before; nothing was changed"):
        rollback(place, "prod", runtime=rt)
    assert tag_digest(place, "prod") == outside.digest
    result = rollback(place, "prod", "1.0.0", runtime=rt)
    assert any("moved outside modelpack" in n for n in result.notes)
    assert load_history(place.target, "prod", place.name).chain[-1].from_digest == outside.digest
