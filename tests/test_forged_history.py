"""Promotion events and policies forged by a pusher with no key (issue 21, items 5 and 6), written by hand
through the real registry as an attacker would (a referrer of the environment's anchor, the fallback index
maintained by the same code every writer uses). With promoter keys in the policy, no forged event changes
what rollback goes to; whatever the keys, prune keeps every release an event names; a policy dated 9999 or
requiring nothing does not outlive the next `policy set`; an owner key makes forged policies not count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.places import attach_report, make_release, runtime
from support.prune_repos import gone

from modelpack import api
from modelpack.environment.history import EVENT_TYPE, Event, anchor, ensure_anchor, load_history
from modelpack.environment.policy import POLICY_TYPE
from modelpack.errors import PromotionError
from modelpack.evidence.evidence import attach
from modelpack.oci import mediatypes as mt
from modelpack.oci.target import Target
from modelpack.registry.client import RegistryRepository
from modelpack.targets import Targets
from modelpack.trust import keys
from modelpack.trust.dsse import seal

VERSIONS = ("1.0.0", "1.1.0", "1.2.0")


@pytest.fixture
def targets(tmp_path: Path) -> Targets:
    t = Targets(store_path=tmp_path / "store", environ={})
    yield t  # type: ignore[misc]
    t.close()


def _releases(target: Target) -> dict[str, str]:
    out = {}
    for v in (*VERSIONS, "6.6.6"):  # 6.6.6: the attacker's release, never tested, never promoted
        release = make_release(target, v, v)
        if v != "6.6.6":
            attach_report(target, release)
        out[v] = release.digest
    return out


def _forge(target: Target, event: Event, signer: keys.PrivateKey | None = None) -> str:
    """An event pushed by hand: attached to prod's anchor like modelpack's own, unsigned or signed by a
    key of the attacker's (claiming nothing it can prove)."""
    subject = anchor(event.env).descriptor()
    if signer is None:
        body, media_type = event.payload(), "application/json"
    else:
        body, media_type = json.dumps(seal(event.payload(), signer, EVENT_TYPE)).encode(), mt.DSSE_ENVELOPE
    return attach(target, subject, EVENT_TYPE, body, media_type, event.annotations()).digest


def _forge_history(target: Target, digests: dict[str, str], attacker: keys.PrivateKey) -> None:
    """A forged root dated 2000 moving prod to 6.6.6, and a follower moving it to what prod names now: an
    earliest-`when` rule makes this the chain, so `rollback prod` would go to 6.6.6; and a forged follower
    of the real head claiming 1.0.0 is 6.6.6 (for `rollback prod 1.0.0`), signed by the attacker's key."""
    real_head = load_history(target, "prod").head
    assert real_head is not None
    root = _forge(
        target,
        Event("prod", "promote", "6.6.6", None, digests["6.6.6"], "ops@ci", "2000-01-01T00:00:00.000000Z"),
    )
    _forge(
        target,
        Event(
            "prod", "promote", "1.2.0", digests["6.6.6"], digests["1.2.0"], "ops@ci",
            "2000-01-01T00:00:01.000000Z", previous_event=root,
        ),
    )  # fmt: skip
    _forge(
        target,
        Event(
            "prod",
            "rollback",
            "1.0.0",
            digests["1.2.0"],
            digests["6.6.6"],
            "ops@ci",
            "2099-01-01T00:00:00.000000Z",
            previous_event=real_head.digest,
        ),
        attacker,
    )


def test_forged_events_change_neither_rollback_nor_what_prune_keeps(
    registry: RegistryProcess, repo: str, targets: Targets, tmp_path: Path
) -> None:
    ops = keys.generate(tmp_path / "ops")
    attacker = keys.generate(tmp_path / "attacker")
    where = targets.open(f"{registry.host}/{repo}")
    assert isinstance(where.target, RegistryRepository)
    target = where.target
    digests = _releases(target)
    ref = f"{registry.host}/{repo}"
    api.policy_set(targets, ref, "prod", f"test,promoter:{ops.public}", runtime=runtime())
    with pytest.raises(PromotionError, match="promoter key"):  # an unsigned move would not count: refused
        api.promote(targets, f"{ref}:1.0.0", "prod", runtime=runtime())
    for v in VERSIONS:
        api.promote(targets, f"{ref}:{v}", "prod", runtime=runtime(), key=str(ops.private))
    _forge_history(target, digests, keys.load_private(str(attacker.private)))

    shown = api.history(targets, ref, "prod")
    statuses = {e.event.version + "/" + e.event.when[:4]: s for e, s in _statuses(shown)}
    assert statuses["6.6.6/2000"] == "unverified" and statuses["1.0.0/2099"] == "unverified"
    assert [e.event.version for e in shown.entries if e.in_effect] == ["1.2.0", "1.1.0", "1.0.0"]
    dry = api.rollback(targets, ref, "prod", dry_run=True, key=str(ops.private))
    assert dry.event.to_digest == digests["1.1.0"]  # not 6.6.6
    back = api.rollback(targets, ref, "prod", "1.0.0", key=str(ops.private), runtime=runtime())
    assert back.event.to_digest == digests["1.0.0"] and target.get_manifest("prod").digest == digests["1.0.0"]

    # prune reads history with no keys at all: the forged chain wins there, and the real events it pushed
    # out are still kept, as is everything any event names
    pruned = api.prune(targets, ref, keep_last=1, history_depth=1)
    assert pruned.failure is None
    for v in VERSIONS:
        assert not gone(target, digests[v]), v


def _statuses(result: api.HistoryResult) -> list[tuple[api.HistoryEntry, str]]:
    doc = result.to_json()["events"]
    return list(zip(result.entries, [e["status"] for e in doc], strict=True))


def test_unsigned_forged_events_cannot_get_prods_releases_pruned(
    registry: RegistryProcess, repo: str, targets: Targets, tmp_path: Path
) -> None:
    where = targets.open(f"{registry.host}/{repo}")
    assert isinstance(where.target, RegistryRepository)
    target = where.target
    digests = _releases(target)
    ref = f"{registry.host}/{repo}"
    for v in VERSIONS:
        api.promote(targets, f"{ref}:{v}", "prod", runtime=runtime())
    _forge_history(target, digests, keys.load_private(str(keys.generate(tmp_path / "a").private)))
    # without promoter keys the forged root (dated 2000) heads the chain: the real events are superseded
    chain = load_history(target, "prod").chain
    assert [e.to_digest for e in chain][:1] == [digests["6.6.6"]]
    pruned = api.prune(targets, ref, keep_last=1, history_depth=1)
    assert pruned.failure is None
    for v in VERSIONS:  # before: 1.0.0 and 1.1.0, prod's real rollback targets, were deleted
        assert not gone(target, digests[v]), v


def _raw_policy(target: Target, payload: dict[str, object]) -> str:
    subject = ensure_anchor(target, "prod")
    ann = {mt.ANN_CREATED: str(payload["created"]), "dev.modelpack.env": "prod"}
    return attach(target, subject, POLICY_TYPE, json.dumps(payload).encode(), "application/json", ann).digest


def test_a_forged_policy_does_not_outlive_the_next_policy_set_and_an_owner_key_ignores_it(
    registry: RegistryProcess, repo: str, targets: Targets, tmp_path: Path
) -> None:
    where = targets.open(f"{registry.host}/{repo}")
    target = where.target
    digests = _releases(target)
    ref = f"{registry.host}/{repo}"
    release = keys.generate(tmp_path / "release")
    owner = keys.generate(tmp_path / "owner")
    api.policy_set(targets, ref, "prod", "test:docker", runtime=runtime())
    # the attack: a policy requiring nothing, and one requiring little, both dated 9999
    _raw_policy(
        target, {"env": "prod", "requirements": [], "who": "ops@ci", "created": "9999-01-01T00:00:00Z"}
    )
    lax = {"kind": "test", "runtime": None, "keys": [], "until": None, "label": "test"}
    forged = _raw_policy(
        target, {"env": "prod", "requirements": [lax], "who": "ops@ci", "created": "9999-12-31T00:00:00Z"}
    )
    assert api.policy_show(targets, ref, "prod").policy.digest == forged  # until the next set ...
    strict = api.policy_set(
        targets, ref, "prod", f"test:docker,signature:{release.public}", runtime=runtime()
    )
    shown = api.policy_show(targets, ref, "prod").policy
    assert shown is not None and shown.digest == strict.policy.digest  # ... which names it and outranks it
    assert shown.previous == forged
    with pytest.raises(PromotionError, match="signature"):
        api.promote(targets, f"{ref}:1.0.0", "prod", runtime=runtime())

    # the owner signs; a pusher writes a lax policy that chains onto it, dated later: heads the chain for a
    # reader without the owner key, counts for none with it
    signed = run_main(
        "policy", "set", ref, "prod", "--require", f"test,signature:{release.public}",
        "--key", str(owner.private), "--json",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    signed_digest = json.loads(signed.stdout)["policyDigest"]
    _raw_policy(target, {
        "env": "prod", "requirements": [lax], "who": "owner@corp", "created": "9999-12-31T00:00:01Z",
        "previous": signed_digest,
    })  # fmt: skip
    unkeyed = run_main("policy", "show", ref, "prod")
    assert "unsigned: anyone with push rights" in unkeyed.stderr and "owner@corp" in unkeyed.stderr
    env = {"MODELPACK_POLICY_KEY": str(owner.public)}
    keyed = run_main("policy", "show", ref, "prod", "--json", env=env)
    doc = json.loads(keyed.stdout)
    assert doc["policyDigest"] == signed_digest and doc["signer"] == keys.load_public(str(owner.public)).keyid
    refused = run_main("promote", f"{ref}:1.0.0", "prod", env=env)
    assert refused.returncode == 1 and "signature:release.pub" in refused.stderr, refused.stderr
    assert digests["1.0.0"] not in refused.stdout

    # read back: an unsigned `policy set` by a reader trusting the owner key is not what is in force
    unsigned = run_main("policy", "set", ref, "prod", "--require", "sbom", env=env)
    assert unsigned.returncode == 1 and "another is in force" in unsigned.stderr, unsigned.stderr
    # an owner key with no signed policy at all: promote refuses rather than read "no policy"
    other = keys.generate(tmp_path / "other-owner")
    none = run_main("promote", f"{ref}:1.0.0", "prod", env={"MODELPACK_POLICY_KEY": str(other.public)})
    assert none.returncode == 1 and "no policy of prod is signed by the owner key" in none.stderr
