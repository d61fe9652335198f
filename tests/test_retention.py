"""The retention rule alone (retention/retention.py): plain values in, a plan out; no registry."""

from __future__ import annotations

import pytest

from modelpack.errors import UsageError
from modelpack.retention.retention import Facts, Plan, Rule, Version, format_age, parse_age, plan

DAY = 86400.0
NOW = 1_800_000_000.0


def d(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def versions(n: int, *, age_days: float = 100.0) -> list[Version]:
    """1.0.0 .. 1.(n-1).0, each a day newer than the one before, the newest `age_days` old."""
    return [Version(f"1.{i}.0", d(i), NOW - (age_days + (n - 1 - i)) * DAY) for i in range(n)]


def actions(p: Plan) -> dict[str, str]:
    return {x.tag: x.to_json()["action"] for x in p.decisions}


def test_keep_last_keeps_the_highest_versions_in_version_order_not_text_order() -> None:
    vs = [Version(t, d(i)) for i, t in enumerate(["1.9.0", "1.10.0", "1.2.0", "1.11.0"])]
    p = plan(vs, Facts(), Rule(keep_last=2))
    assert actions(p) == {"1.11.0": "keep", "1.10.0": "keep", "1.9.0": "delete", "1.2.0": "delete"}
    assert [x.tag for x in p.decisions] == ["1.11.0", "1.10.0", "1.9.0", "1.2.0"]  # newest first
    assert p.manifests == (d(2), d(0))  # oldest first
    assert p.decisions[2].reasons == ("not among the newest 2",)


def test_environments_rollback_targets_and_keep_patterns_protect_and_say_why() -> None:
    vs = versions(6)
    facts = Facts(
        environments={"prod": d(1)},
        rollback={d(0): ("rollback target of prod (1 back: 1.0.0)",)},
    )
    p = plan(vs, facts, Rule(keep_last=1, keep=("1.2.*",)))
    assert actions(p) == {
        "1.5.0": "keep",
        "1.4.0": "delete",
        "1.3.0": "delete",
        "1.2.0": "keep",
        "1.1.0": "keep",
        "1.0.0": "keep",
    }
    why = {x.tag: x.reasons for x in p.decisions}
    assert why["1.1.0"] == ("prod names it now",)
    assert why["1.0.0"] == ("rollback target of prod (1 back: 1.0.0)",)
    assert why["1.2.0"] == ("matches --keep 1.2.*",)


def test_older_than_and_keep_last_together_delete_only_what_both_select() -> None:
    vs = versions(4, age_days=10)  # ages 13, 12, 11, 10 days
    p = plan(vs, Facts(), Rule(keep_last=1, older_than=parse_age("12d"), now=NOW))
    assert actions(p) == {"1.3.0": "keep", "1.2.0": "keep", "1.1.0": "keep", "1.0.0": "delete"}
    assert {x.tag: x.reasons for x in p.decisions}["1.0.0"] == ("not among the newest 1", "older than 12d")


def test_a_version_of_unknown_age_is_kept_under_older_than() -> None:
    p = plan([Version("1.0.0", d(1))], Facts(), Rule(older_than=DAY, now=NOW))
    assert actions(p) == {"1.0.0": "keep"}
    assert "unknown" in p.decisions[0].reasons[0]


def test_a_deleted_tag_sharing_a_kept_digest_is_untagged_and_its_manifest_protected() -> None:
    vs = [Version("1.0.0", d(7)), Version("1.0.0-final", d(7)), Version("2.0.0", d(8))]
    p = plan(vs, Facts(), Rule(keep_last=1, keep=("*-final",)))
    assert actions(p) == {"2.0.0": "keep", "1.0.0-final": "keep", "1.0.0": "untag"}
    assert d(7) in p.protected and p.manifests == ()
    untagged = next(x for x in p.decisions if x.tag == "1.0.0")
    assert untagged.reasons == (
        "not among the newest 1",
        "its manifest stays: the kept tag 1.0.0-final names it",
    )


def test_a_child_of_a_kept_index_is_never_deleted_as_a_manifest() -> None:
    vs = [Version("2.0.0", d(2), children=frozenset({d(9)})), Version("1.0.0-bundle", d(9))]
    p = plan(vs, Facts(), Rule(keep_last=1))
    assert actions(p) == {"2.0.0": "keep", "1.0.0-bundle": "untag"}
    assert p.manifests == ()


def test_a_dataset_a_kept_model_records_is_kept_and_one_only_a_deleted_model_records_is_not() -> None:
    models = [
        Version("2.0.0", d(20), uses_digests=frozenset({d(2)})),
        Version("1.0.0", d(10), uses_digests=frozenset({d(1)})),
    ]
    datasets = [Version("0.1.0", d(1)), Version("0.2.0", d(2)), Version("0.0.1", d(3))]
    p = plan(models + datasets, Facts(), Rule(keep_last=1))
    assert actions(p) == {
        "2.0.0": "keep",
        "1.0.0": "delete",
        "0.2.0": "keep",
        "0.1.0": "delete",
        "0.0.1": "delete",
    }
    assert {x.tag: x.reasons for x in p.decisions}["0.2.0"] == (
        "a dataset version recorded by kept model 2.0.0",
    )


def test_datasets_recorded_elsewhere_or_by_ref_are_kept() -> None:
    vs = [Version("3.0.0", d(3)), Version("2.0.0", d(2)), Version("1.0.0", d(1))]
    facts = Facts(
        used_digests={d(1): "recorded by reg/models:1.4.0"},
        used_tags={"2.0.0": "recorded by reg/models:1.5.0"},
    )
    p = plan(vs, facts, Rule(keep_last=0))
    assert actions(p) == {"3.0.0": "delete", "2.0.0": "keep", "1.0.0": "keep"}


def test_other_tags_protect_their_digest() -> None:
    p = plan([Version("1.0.0", d(1))], Facts(other_tags=(Version("latest", d(1)),)), Rule(keep_last=0))
    assert actions(p) == {"1.0.0": "untag"}


@pytest.mark.parametrize("text", ["90", "d", "0d", "-1d", "1.5d", "3m", "1y", "", "9999999d"])
def test_a_bad_age_is_one_clear_line(text: str) -> None:
    with pytest.raises(UsageError, match="is not an age") as e:
        parse_age(text)
    assert "\n" not in str(e.value.message) and "90d" in str(e.value.hint)


def test_ages_parse_and_print() -> None:
    assert parse_age("90d") == 90 * DAY
    assert parse_age("12h") == 12 * 3600
    assert parse_age("2w") == 14 * DAY
    assert format_age(parse_age("2w")) == "2w" and format_age(parse_age("90d")) == "90d"


def test_a_rule_is_required_and_keep_last_is_not_negative() -> None:
    with pytest.raises(UsageError, match="needs a rule"):
        plan(versions(2), Facts(), Rule())
    with pytest.raises(UsageError, match="--keep-last"):
        plan(versions(2), Facts(), Rule(keep_last=-1))


def test_the_plan_is_frozen() -> None:
    p = plan(versions(2), Facts(), Rule(keep_last=1))
    with pytest.raises(AttributeError):
        p.decisions = ()  # type: ignore[misc]


def test_workflow_build_tags_tie_on_their_version_and_go_by_creation_time() -> None:
    """`<version>-<short sha>`: an all-digit sha read as a PEP 440 post-release, a sha with a letter as no
    version, so --keep-last 1 kept an old build and deleted the newest push."""
    vs = [
        Version("1.0.0-1234567", d(1), NOW - 3 * DAY),  # all digits: was "1.0.0.post1234567", the newest
        Version("1.0.0-abc1234", d(2), NOW - 1 * DAY),  # a letter: was "no version", the oldest
        Version("1.0.0-7654321", d(3), NOW - 2 * DAY),
    ]
    p = plan(vs, Facts(), Rule(keep_last=1))
    assert [x.tag for x in p.decisions] == ["1.0.0-abc1234", "1.0.0-7654321", "1.0.0-1234567"]
    assert actions(p)["1.0.0-abc1234"] == "keep"
    later = Version("1.1.0-0000001", d(4), NOW - 9 * DAY)  # a higher version wins over a newer build
    assert plan([*vs, later], Facts(), Rule(keep_last=1)).decisions[0].tag == "1.1.0-0000001"
    stamped = [  # the generated workflow's tags now: <version>-<UTC commit time>-<short sha>
        Version("1.0.0-20261201090000-1234567", d(5)),
        Version("1.0.0-20261203090000-abcdef0", d(6)),
        Version("1.0.0-20261202090000-7777777", d(7)),
    ]
    order = [x.tag for x in plan(stamped, Facts(), Rule(keep_last=1)).decisions]
    assert order == sorted(order, reverse=True) and order[0].startswith("1.0.0-20261203")
    assert [
        x.tag for x in plan([*vs[:1], Version("1.2.0-rc1", d(8))], Facts(), Rule(keep_last=1)).decisions
    ] == [
        "1.2.0-rc1",
        "1.0.0-1234567",
    ]


def test_team_names_that_are_no_versions_go_by_creation_time() -> None:
    vs = [
        Version("model-bert-sst2-acc92-v5", d(1), NOW - 1 * DAY),
        Version("model-bert-sst2-acc90-v4", d(2), NOW - 2 * DAY),
        Version("1.0.0", d(3), NOW - 3 * DAY),
        Version("model-bert-sst2-acc91-v6", d(4)),  # no creation time: the oldest
    ]
    p = plan(vs, Facts(), Rule(keep_last=2))
    assert [x.tag for x in p.decisions] == [
        "model-bert-sst2-acc92-v5",
        "model-bert-sst2-acc90-v4",
        "1.0.0",
        "model-bert-sst2-acc91-v6",
    ]
    assert [x.tag for x in p.deleted] == ["1.0.0", "model-bert-sst2-acc91-v6"]
