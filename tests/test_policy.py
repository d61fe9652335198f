"""Promotion policies: kept beside the environment, enforced by promote (forced or not), reported by
rollback, recorded in each event. Signature, provenance and SBOM requirements are exercised with real
evidence in tests/test_policy_evidence.py; here the rules themselves, on the three kinds of place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.clirun import run_main
from support.places import Kind, attach_report, make_release, runtime

from modelpack.environment.history import load_history
from modelpack.environment.policy import Policy, parse_requirements, read_policy, write_policy
from modelpack.environment.promote import promote, rollback
from modelpack.errors import InputError, PromotionError, UsageError
from modelpack.evidence.evidence import attach, report_annotations
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.trust import keys


def _policy(kind: Kind, env: str, text: str, created: str = "2026-12-01T00:00:00.000000Z") -> Policy:
    place = kind.place
    return write_policy(place.target, Policy(env, parse_requirements(text), "ops@ci", created), place.name)


def _report(kind: Kind, release: object, runtime_name: str) -> None:
    target = kind.place.target
    subject = Descriptor(release.media_type, release.digest, len(release.raw))  # type: ignore[attr-defined]
    ann = report_annotations(passed=True, created="2026-12-01T00:00:00Z", runtime=runtime_name, version="x")
    attach(target, subject, mt.TEST_REPORT_ARTIFACT, b'{"passed": true}', "application/json", ann)


def test_the_newest_policy_is_in_force_and_keeps_its_keys(kind: Kind, tmp_path: Path) -> None:
    pub = keys.generate(tmp_path / "release").public
    _policy(kind, "prod", "test:docker", created="2026-12-01T00:00:00.000000Z")
    _policy(
        kind, "prod", f"test:docker,signature:{pub}@2027-06-30,sbom", created="2026-12-02T00:00:00.000000Z"
    )
    found = read_policy(kind.place.target, "prod", kind.place.name)
    assert found is not None
    assert [r.kind for r in found.requirements] == ["test", "signature", "sbom"]
    sig = found.requirements[1]
    assert sig.until == "2027-06-30" and sig.label == "signature:release.pub@2027-06-30"
    assert [k.keyid for k in sig.public_keys()] == [keys.load_public(str(pub)).keyid]
    assert read_policy(kind.place.target, "staging", kind.place.name) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("tests", "unknown requirement 'tests'"),
        ("signature", "needs one public key"),
        ("signature:{pub}@someday", "is not a date"),
        ("sbom:yes", "takes no argument"),
        ("model-signature:{pub}@2027-01-01", "only signature keys take @DATE"),
    ],
)
def test_a_bad_requirement_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    pub = keys.generate(tmp_path / "k").public
    with pytest.raises(UsageError, match=message):
        parse_requirements(text.format(pub=pub))


def test_a_policy_takes_public_keys_only(tmp_path: Path) -> None:
    files = keys.generate(tmp_path / "k")
    with pytest.raises(InputError, match="is a private key"):
        parse_requirements(f"signature:{files.private}")
    with pytest.raises(InputError, match="does not exist"):
        parse_requirements(f"signature:{tmp_path / 'absent.pub'}")


def test_promote_refuses_what_the_policy_requires_even_forced(kind: Kind) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    _report(kind, v1, "local")
    _policy(kind, "prod", "test:docker")
    for force in (False, True):
        with pytest.raises(
            PromotionError, match=r"policy requires what it lacks: test:docker: no passing"
        ) as e:
            promote(place, "1.0.0", "prod", force=force, reason="hotfix", runtime=runtime())
        assert "--force does not override a policy" in str(e.value)
    assert load_history(place.target, "prod", place.name).head is None
    with pytest.raises(Exception):  # noqa: B017 - the tag must not exist: any NotFound flavour
        place.target.get_manifest("prod")

    _report(kind, v1, "docker")
    moved = promote(place, "1.0.0", "prod", runtime=runtime())
    assert moved.changed
    recorded = load_history(place.target, "prod", place.name).head
    assert recorded is not None
    checked = [(c.kind, c.ok) for c in recorded.evidence]
    assert checked == [("test", True), ("test", True)]  # the built-in rule and the policy's
    assert recorded.evidence[1].detail.startswith("test:docker: passing test report")
    assert moved.to_json()["evidence"][1]["kind"] == "test"


def test_a_key_past_its_trust_date_refuses_the_promotion(kind: Kind, tmp_path: Path) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, v1)
    pub = keys.generate(tmp_path / "old").public
    _policy(kind, "prod", f"signature:{pub}@2026-01-31")
    with pytest.raises(PromotionError, match="trust expired on 2026-01-31"):
        promote(place, "1.0.0", "prod", runtime=runtime())  # the fake clock is in 2026-09


def test_rollback_warns_of_an_unmet_policy_and_records_it(kind: Kind) -> None:
    place = kind.place
    v1 = make_release(place.target, "1.0.0", "1.0.0")
    v2 = make_release(place.target, "2.0.0", "2.0.0")
    for v in (v1, v2):
        _report(kind, v, "docker")
    promote(place, "1.0.0", "prod", runtime=runtime())
    promote(place, "2.0.0", "prod", runtime=runtime(clock=lambda: 1_790_000_100.0))
    _policy(kind, "prod", "test:local")
    back = rollback(place, "prod", runtime=runtime(clock=lambda: 1_790_000_200.0))
    assert back.changed and back.event.to_digest == v1.digest
    assert any(n.startswith("warning: prod's policy is not met") and "test:local" in n for n in back.notes)
    head = load_history(place.target, "prod", place.name).head
    assert head is not None and [(c.kind, c.ok) for c in head.evidence] == [("test", False)]


def test_policy_commands_set_show_and_json(registry_repo: str, tmp_path: Path) -> None:
    pub = keys.generate(tmp_path / "release").public
    set_ = run_main(
        "policy", "set", registry_repo, "prod", "--require", f"test:docker,signature:{pub}", "--json"
    )
    assert set_.returncode == 0, set_.stderr
    shown = run_main("policy", "show", registry_repo, "prod", "--json")
    assert shown.returncode == 0, shown.stderr
    import json

    doc = json.loads(shown.stdout)
    assert [r["label"] for r in doc["requirements"]] == ["test:docker", "signature:release.pub"]
    text = run_main("policy", "show", registry_repo, "prod")
    assert "signature" in text.stdout and keys.load_public(str(pub)).keyid[:12] in text.stdout
    none = run_main("policy", "show", registry_repo, "staging")
    assert none.returncode == 0 and "has no policy" in none.stderr
    bad = run_main("policy", "set", registry_repo, "prod", "--require", "signatures:x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown requirement" in bad.stderr


def test_a_signed_provenance_holds_beside_a_newer_unsigned_one(kind: Kind, tmp_path: Path) -> None:
    """A release rebuilt without the key (a CI check job) gets a second, unsigned provenance: the signed
    one still meets `provenance:KEY`; with only the unsigned one it is refused."""
    from modelpack.evidence.attestations import attach_envelope, check_provenance
    from modelpack.trust.intoto import statement, subject
    from modelpack.trust.slsa import SLSA_PREDICATE

    place = kind.place
    release = make_release(place.target, "1.0.0", "1.0.0")
    desc = Descriptor(release.media_type, release.digest, len(release.raw))
    signer = keys.load_private(str(keys.generate(tmp_path / "ci").private), env={})
    predicate = {"buildDefinition": {}, "runDetails": {}}
    doc = statement([subject("iris", release.digest)], SLSA_PREDICATE, predicate)
    ptype = mt.PROVENANCE_ARTIFACT

    def ann(when: str) -> dict[str, str]:
        return {mt.ANN_CREATED: when}

    attach_envelope(place.target, desc, ptype, doc, None, ann("2026-12-02T00:00:02Z"))  # newest, unsigned
    assert not check_provenance(place.target, release.digest, [signer.public]).ok
    attach_envelope(place.target, desc, ptype, doc, signer, ann("2026-12-02T00:00:01Z"))
    held = check_provenance(place.target, release.digest, [signer.public])
    assert held.ok and held.signer == signer.public.keyid


def test_history_says_each_kind_of_check_once(registry_repo: str, tmp_path: Path) -> None:
    """The built-in test rule and a policy's test:docker both passed: CHECKED read `test:ok test:ok`."""
    from modelpack import api

    with api.Targets(store_path=tmp_path / "store", environ={}) as targets:
        target = targets.open(registry_repo).target
        release = make_release(target, "1.0.0", "1.0.0")
        subject = Descriptor(release.media_type, release.digest, len(release.raw))
        when = "2026-12-01T00:00:00Z"
        ann = report_annotations(passed=True, created=when, runtime="docker", version="1.0.0")
        attach(target, subject, mt.TEST_REPORT_ARTIFACT, b'{"passed": true}', "application/json", ann)
    assert run_main("policy", "set", registry_repo, "prod", "--require", "test:docker").returncode == 0
    assert run_main("promote", f"{registry_repo}:1.0.0", "prod").returncode == 0
    shown = run_main("history", registry_repo, "prod")
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "promote" in line)
    assert row.count("test:ok") == 1, row
    doc = json.loads(run_main("history", registry_repo, "prod", "--json").stdout)
    evidence = doc["events"][0]["evidence"]
    assert [c["kind"] for c in evidence] == ["test", "test"]  # both checks stay in the record
