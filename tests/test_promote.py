"""promote against the real registry, an `oci:` layout and the local store: retag by bytes, refuse untested
releases, record events, change nothing on bad input or --dry-run.

The releases here are hand-made (a bundle-like manifest and a release index with a version annotation):
promotion reads only manifests, so a real build would add minutes and test nothing more.
"""

from __future__ import annotations

import os

import pytest
from fixtures.registry import RegistryProcess
from support.places import (
    REPORT_PASSED,
    Kind,
    attach_report,
    event_count,
    make_release,
    runtime,
    tag_digest,
)
from support.registry_helpers import Requests, client_for

from modelpack.environment.history import load_history
from modelpack.environment.place import Place, environments
from modelpack.environment.promote import promote
from modelpack.errors import NotFoundError, PromotionError, UsageError
from modelpack.evidence.evidence import attach
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.registry.client import RegistryRepository

# -- helpers shared by the promote/rollback/history test modules ---------------------------------------------


















# -- tests ---------------------------------------------------------------------------------------------------


def test_promote_retags_the_same_bytes_and_records_an_event(kind: Kind) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, v1)
    result = promote(place, "1.0.0", "prod", runtime=runtime())
    assert result.changed and not result.dry_run
    stored = place.target.get_manifest("prod")
    assert stored.raw == v1.raw and stored.digest == v1.digest  # the very bytes, so the very digest
    history = load_history(place.target, "prod", place.name)
    assert [e.digest for e in history.chain] == [result.event.digest]
    event = history.chain[0]
    assert (event.action, event.version, event.from_digest, event.to_digest) == (
        "promote",
        "1.0.0",
        None,
        v1.digest,
    )
    assert event.who == "alice@laptop" and event.when.startswith("2026-") and not event.forced
    assert event.previous_event is None


def test_second_promotion_chains_to_the_first(kind: Kind) -> None:
    place = kind.place
    rt = runtime()
    for v in ("1.0.0", "1.1.0"):
        attach_report(place.target, make_release(place.target, v, v))
    first = promote(place, "1.0.0", "prod", runtime=rt)
    second = promote(place, "1.1.0", "prod", reason="better f1", runtime=rt)
    history = load_history(place.target, "prod", place.name)
    assert [e.digest for e in history.chain] == [first.event.digest, second.event.digest]
    assert history.chain[1].previous_event == first.event.digest
    assert history.chain[1].from_digest == first.event.to_digest
    assert history.chain[1].reason == "better f1"
    assert tag_digest(place, "prod") == second.event.to_digest


def test_refuses_a_release_without_a_passing_report(kind: Kind) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, v1, passed=False)
    with pytest.raises(PromotionError, match=r"no passing test report is attached to sha256:"):
        promote(place, "1.0.0", "prod", runtime=runtime())
    assert tag_digest(place, "prod") is None
    assert event_count(place, "prod") == 0


def test_a_report_on_another_digest_does_not_count(kind: Kind) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    make_release(place.target, "1.1.0", "1.1.0")
    attach_report(place.target, v1)  # 1.0.0 passed; 1.1.0 never ran
    with pytest.raises(PromotionError, match="refusing to promote"):
        promote(place, "1.1.0", "prod", runtime=runtime())
    assert tag_digest(place, "prod") is None


def test_force_needs_a_reason_and_is_recorded(kind: Kind) -> None:
    place = kind.place
    make_release(place.target, "1.0.0", "1.0.0")
    with pytest.raises(UsageError, match="--force needs --reason"):
        promote(place, "1.0.0", "prod", force=True, runtime=runtime())
    assert tag_digest(place, "prod") is None
    result = promote(place, "1.0.0", "prod", force=True, reason="hotfix, tests flaky", runtime=runtime())
    event = load_history(place.target, "prod", place.name).chain[0]
    assert event.forced and event.reason == "hotfix, tests flaky"
    assert any("forced" in n for n in result.notes)


def test_promote_of_a_missing_tag_says_so(kind: Kind) -> None:
    place = kind.place
    make_release(place.target, "1.0.0", "1.0.0")
    with pytest.raises(NotFoundError, match=r"cannot promote .*9\.9\.9.*does not exist"):
        promote(place, "9.9.9", "prod", runtime=runtime())
    assert tag_digest(place, "prod") is None


@pytest.mark.parametrize("env", ["1.0.0", "v2", "sha256-abcd", "has space", "-lead", "x" * 129, "a/b"])
def test_invalid_environment_names_are_refused(kind: Kind, env: str) -> None:
    place = kind.place
    attach_report(place.target, make_release(place.target, "1.0.0", "1.0.0"))
    with pytest.raises(UsageError):
        promote(place, "1.0.0", env, runtime=runtime())
    assert event_count(place, "prod") == 0


def test_dry_run_changes_nothing(kind: Kind) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, v1)
    tags_before = sorted(place.target.list_tags())
    result = promote(place, "1.0.0", "prod", dry_run=True, runtime=runtime())
    assert result.dry_run and not result.changed and result.event.to_digest == v1.digest
    assert result.event.digest is None
    assert sorted(place.target.list_tags()) == tags_before
    assert event_count(place, "prod") == 0


def test_promoting_what_is_already_there_records_nothing(kind: Kind) -> None:
    place = kind.place
    attach_report(place.target, make_release(place.target, "1.0.0", "1.0.0"))
    promote(place, "1.0.0", "prod", runtime=runtime())
    again = promote(place, "1.0.0", "prod", runtime=runtime())
    assert not again.changed and any("nothing to do" in n for n in again.notes)
    assert event_count(place, "prod") == 1


def test_promote_by_digest(kind: Kind) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, v1)
    result = promote(place, v1.digest, "staging", runtime=runtime())
    assert result.event.version == "1.0.0"  # from the index's annotation
    assert tag_digest(place, "staging") == v1.digest


def test_no_blob_moves_and_a_bounded_number_of_requests(registry: RegistryProcess, repo: str) -> None:
    """The retag touches manifests only: no blob of the release is read or written, whatever its size."""
    seen = Requests()
    with client_for(registry.host, event_hooks={"request": [seen]}) as client:
        place = Place(RegistryRepository(client, repo), None, f"{registry.host}/{repo}")
        big = os.urandom(3 * 1024 * 1024)
        v1 = make_release(place.target, "1.0.0", "1.0.0", weights=big)
        attach_report(place.target, v1)
        promote(place, "1.0.0", "prod", runtime=runtime())  # first: also creates the anchor
        v2 = make_release(place.target, "1.1.0", "1.1.0", weights=big[::-1])
        attach_report(place.target, v2)
        seen.seen.clear()
        promote(place, "1.1.0", "prod", runtime=runtime())
    weight_paths = [p for _, p in seen.seen if "/blobs/" in p and Descriptor.of("x", big[::-1]).digest in p]
    assert weight_paths == []
    assert seen.count("PUT", "/manifests/prod") == 1
    assert len(seen.seen) <= 25, seen.seen


@pytest.mark.parametrize("env", ["Prod", "PROD", "prod!", "-x", ""])
def test_environment_names_are_lowercase(kind: Kind, env: str) -> None:
    release = make_release(kind.place.target, "1.0.0", "1.0.0")
    attach_report(kind.place.target, release)
    with pytest.raises(UsageError, match="not a valid name"):
        promote(kind.place, "1.0.0", env, runtime=runtime())


def test_a_first_promotion_next_to_a_case_twin_is_refused(kind: Kind) -> None:
    place = kind.place
    release = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, release)
    place.target.put_manifest("Prod", release)  # an environment from before names were lowercase
    with pytest.raises(UsageError, match="differs only in case from the existing 'Prod'"):
        promote(place, "1.0.0", "prod", runtime=runtime())


def test_require_runtime_refuses_a_local_only_report_and_says_which_it_found(kind: Kind) -> None:
    place = kind.place
    release = make_release(place.target, "1.0.0", "1.0.0")
    attach(
        place.target,
        Descriptor(release.media_type, release.digest, len(release.raw)),
        mt.TEST_REPORT_ARTIFACT,
        b'{"passed": true}',
        "application/json",
        {
            REPORT_PASSED: "true",
            "dev.modelpack.test.created": "2026-12-01T00:00:00Z",
            "dev.modelpack.test.runtime": "local",
        },
    )
    with pytest.raises(
        PromotionError, match=r"from the docker runtime .*\(there is one from the local runtime\)"
    ):
        promote(place, "1.0.0", "prod", runtime=runtime(), require_runtime="docker")
    done = promote(place, "1.0.0", "prod", runtime=runtime(), require_runtime="local")
    assert any("(local runtime)" in n for n in done.notes)


def test_promote_after_a_failed_report_says_what_failed(kind: Kind) -> None:
    """It said only 'no passing test report is attached', as if the release were untested."""
    from support.portal_fixtures import runner_report

    from modelpack.testing.report import attach_report as attach_test_report

    place = kind.place
    release = make_release(place.target, "1.0.0", "1.0.0")
    report = runner_report("1.0.0", release.digest, release.media_type, len(release.raw), passed=False)
    attach_test_report(place.target, report)
    with pytest.raises(PromotionError) as e:
        promote(place, "1.0.0", "prod", runtime=runtime())
    assert "the newest report (local runtime, 2026-12-01T05:00:01Z) FAILED (1 check: case virginica)" in str(
        e.value
    )


def test_one_rule_says_which_tags_are_environments(kind: Kind) -> None:
    """An environment is a tag with an environment's name and promotion history: `latest` (never promoted)
    is not one, a version tag never is; ls, inspect, the catalog and prune all ask this one function."""
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, v1)
    place.target.put_manifest("latest", v1)
    promote(place, "1.0.0", "prod", runtime=runtime())
    tags = place.target.list_tags()
    assert {"1.0.0", "latest", "prod"} <= set(tags)
    assert environments(place, tags) == {"prod"}
    assert environments(place, tags, naming=v1.digest) == {"prod"}
    assert environments(place, tags, naming="sha256:" + "0" * 64) == frozenset()
