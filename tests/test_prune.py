"""`prune` on a real distribution registry and in the local store: exactly the expected tags remain, rollback
targets still roll back, evidence goes with its release, datasets kept models record stay, a refusal
midway says what was deleted and keeps the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.places import attach_report, make_release, runtime
from support.prune_repos import VERSIONS, gone, populate
from support.registry_helpers import client_for, push_artifact

from modelpack import api
from modelpack.environment.history import anchor
from modelpack.environment.place import Place
from modelpack.errors import PromotionError, RefusedError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Index, parse
from modelpack.oci.target import RawManifest, Target
from modelpack.registry.client import RegistryRepository
from modelpack.registry.referrers import fallback_tag
from modelpack.retention.prune import execute, facts, read_repository
from modelpack.retention.retention import Rule, plan
from modelpack.store.layout import LayoutStore
from modelpack.store.storerepo import StoreRepository
from modelpack.targets import Targets


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    with Targets(store_path=tmp_path / "store", environ={}) as t:
        yield t


def _children(target: Target, digest: str) -> list[str]:
    raw = target.get_manifest(digest)
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Index)
    return [d.digest for d in doc.manifests]


def test_prune_keeps_environments_rollback_targets_patterns_and_shared_digests(
    registry: RegistryProcess, repo: str, targets: Targets
) -> None:
    r = populate(registry.host, repo, targets)
    bundles = {v: _children(r.target, r.digests[v]) for v in VERSIONS}
    result = api.prune(targets, r.ref, keep_last=2, keep=["1.1.*"], history_depth=1)

    actions = {d.tag: d.to_json()["action"] for d in result.decisions}
    assert actions == {
        "1.7.0": "keep",  # newest 2
        "1.6.0": "keep",  # newest 2, and staging names it
        "1.5.0": "keep",  # prod names it
        "1.4.0": "delete",  # in prod's history, but not its last event nor one rollback back
        "1.3.0": "keep",  # prod's rollback target
        "1.2.1": "delete",
        "1.2.0": "delete",
        "1.1.0": "keep",  # --keep 1.1.*
        "1.0.0": "delete",
        "0.9.0": "untag",  # shares 1.7.0's digest: the tag goes, the manifest stays
    }
    why = {d.tag: d.reasons for d in result.decisions}
    assert why["1.5.0"][0] == "prod names it now"
    assert why["1.3.0"][0].startswith("rollback target of prod (1 back: 1.3.0)")
    assert result.failure is None and not result.dry_run
    assert sorted(result.deleted_versions) == ["0.9.0", "1.0.0", "1.2.0", "1.2.1", "1.4.0"]

    kept = ["1.1.0", "1.3.0", "1.5.0", "1.6.0", "1.7.0"]
    evidence = {fallback_tag(r.digests[v]) for v in kept}
    anchors = {fallback_tag(anchor(env).digest) for env in ("prod", "staging")}
    assert set(r.target.list_tags()) == {*kept, "prod", "staging", *evidence, *anchors}
    for v in ("1.0.0", "1.2.0", "1.4.0"):
        assert gone(r.target, r.digests[v])
        assert gone(r.target, r.reports[v])  # its test report went with it
        assert all(gone(r.target, c) for c in bundles[v])  # and its bundle manifest
    for v in kept:
        assert not gone(r.target, r.reports[v]) and not any(gone(r.target, c) for c in bundles[v])
    kinds = [d.kind for d in result.deleted if d.version == "1.0.0"]
    assert kinds == ["referrer", "referrers tag", "manifest", "child"]  # referrers first, children last

    # every kept target still rolls back, and what was pruned says so instead of half-working
    rt = runtime()
    back = api.rollback(targets, r.ref, "prod", runtime=rt)
    assert back.event.to_digest == r.digests["1.3.0"]
    for v in ("1.5.0", "1.3.0"):
        assert api.rollback(targets, r.ref, "prod", v, runtime=rt).event.to_digest == r.digests[v]
    assert api.rollback(targets, r.ref, "staging", "1.6.0", runtime=rt).changed is False
    with pytest.raises(PromotionError, match="is gone"):
        api.rollback(targets, r.ref, "prod", "1.0.0", runtime=rt)


def test_the_default_history_depth_keeps_every_release_prod_ran(
    registry: RegistryProcess, repo: str, targets: Targets
) -> None:
    r = populate(registry.host, repo, targets)
    result = api.prune(targets, r.ref, keep_last=0, dry_run=True)
    kept = sorted(d.tag for d in result.decisions if d.keep)
    assert kept == ["1.0.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"]
    assert result.dry_run and result.deleted == ()
    assert set(r.digests) <= set(r.target.list_tags())  # a dry run deletes nothing


class FailingDelete(httpx.BaseTransport):
    """The real registry, except that the `nth` DELETE answers 500: a fault it will not make on demand."""

    def __init__(self, nth: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.deletes = 0
        self.nth = nth

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            self.deletes += 1
            if self.deletes == self.nth:
                return httpx.Response(500, json={"errors": [{"code": "UNKNOWN", "message": "disk on fire"}]})
        return self.inner.handle_request(request)


def test_a_refused_delete_midway_says_what_was_deleted_and_keeps_the_rest(
    registry: RegistryProcess, repo: str, targets: Targets
) -> None:
    r = populate(registry.host, repo, targets)
    before = set(r.target.list_tags())
    # DELETEs: 1 the deletes probe, 2-3 untagging 0.9.0 (its own probe, then its placeholder), 4 the
    # first referrer of 1.0.0, the oldest version to go
    client = client_for(registry.host, transport=FailingDelete(nth=4))
    try:
        place = Place(RegistryRepository(client, repo), None, r.ref)
        seen = read_repository(place)
        decided = plan(seen.versions, facts(place, seen, 1, ()), Rule(keep_last=2, keep=("1.1.*",)))
        outcome = execute(place, decided, seen)
    finally:
        client.close()
    assert outcome.failure is not None
    assert "HTTP 500" in outcome.failure and "1 deleted before that" in outcome.failure
    assert "run prune again" in outcome.failure
    assert [d.kind for d in outcome.deleted] == ["tag"]  # 0.9.0, oldest, untagged only
    assert outcome.deleted[0].version == "0.9.0"
    # The 1.0.0 report's DELETE was refused: 1.0.0 is whole, and so is everything kept.
    assert not gone(r.target, r.digests["1.0.0"]) and not gone(r.target, r.reports["1.0.0"])
    assert set(r.target.list_tags()) == before - {"0.9.0"}

    again = api.prune(targets, r.ref, keep_last=2, keep=["1.1.*"], history_depth=1)
    assert again.failure is None
    assert sorted(again.deleted_versions) == ["1.0.0", "1.2.0", "1.2.1", "1.4.0"]


def _with_record(target: Target, tag: str, record: dict[str, object]) -> RawManifest:
    """A model release whose record annotation names datasets (the fields issue 16 adds: digest, ref)."""
    release = make_release(target, f"{tag}-base", tag)
    index = parse(release.raw, release.media_type)
    assert isinstance(index, Index)
    doc = Index(
        manifests=index.manifests, annotations={mt.ANN_VERSION: tag, mt.ANN_RECORD: json.dumps(record)}
    )
    raw = RawManifest(doc.to_bytes(), doc.media_type, doc.digest)
    target.put_manifest(tag, raw)
    target.delete_tag(f"{tag}-base")
    return raw


def _release_at(target: Target, tag: str, version: str, created: str) -> str:
    release = make_release(target, f"{tag}-base", version)
    index = parse(release.raw, release.media_type)
    assert isinstance(index, Index)
    doc = Index(manifests=index.manifests, annotations={mt.ANN_VERSION: version, mt.ANN_CREATED: created})
    target.put_manifest(tag, RawManifest(doc.to_bytes(), doc.media_type, doc.digest))
    target.delete_tag(f"{tag}-base")
    return doc.digest


def test_what_is_a_version_comes_from_the_artifact_not_the_tag_shape(
    registry: RegistryProcess, repo: str, targets: Targets
) -> None:
    """Team names (`model-bert-sst2-acc92-v5`, `dataset-v1.0.0`) were taken for environments and never
    pruned, silently; workflow builds `<version>-<sha>` were ordered by PEP 440 and the newest deleted."""
    where = targets.open(f"{registry.host}/{repo}")
    target = where.target
    assert isinstance(target, RegistryRepository)
    day = "2026-12-0{}T00:00:00Z"
    _release_at(target, "model-bert-sst2-acc90-v4", "model-bert-sst2-acc90-v4", day.format(1))
    newest = _release_at(target, "model-bert-sst2-acc92-v5", "model-bert-sst2-acc92-v5", day.format(3))
    _release_at(target, "1.0.0-1234567", "1.0.0-1234567", day.format(2))  # an all-digit sha
    target.put_manifest(
        "latest", target.get_manifest("model-bert-sst2-acc92-v5")
    )  # an alias, never a version
    for i, v in enumerate(("dataset-v1.0.0", "dataset-v1.1.0")):
        ann = {mt.ANN_CREATED: day.format(i + 1)}
        push_artifact(target, v, [v.encode()], artifact_type=mt.DATASET_ARTIFACT, annotations=ann)
    make_release(target, "staging-ish", "9.9.9")  # env-shaped, but no history: a release, so a version
    release = make_release(target, "2.0.0", "2.0.0")
    attach_report(target, release)
    api.promote(targets, f"{registry.host}/{repo}:2.0.0", "qa", runtime=runtime())
    plan_ = api.prune(targets, f"{registry.host}/{repo}", keep_last=2, dry_run=True)
    actions = {d.tag: d.to_json()["action"] for d in plan_.decisions}
    assert set(actions) >= {
        "model-bert-sst2-acc90-v4",
        "model-bert-sst2-acc92-v5",
        "dataset-v1.0.0",
        "staging-ish",
    }
    assert "latest" not in actions and "qa" not in actions  # an alias and an environment: never versions
    assert actions["model-bert-sst2-acc92-v5"] == "keep" and actions["2.0.0"] == "keep"
    assert actions["dataset-v1.0.0"] == "delete" and actions["model-bert-sst2-acc90-v4"] == "delete"
    assert actions["1.0.0-1234567"] == "keep"  # second newest by creation time
    assert actions["dataset-v1.1.0"] == actions["staging-ish"] == "delete"  # (no creation time: oldest)
    assert newest in {d.digest for d in plan_.decisions if d.keep}


def test_a_dataset_version_a_kept_model_records_is_kept(
    registry: RegistryProcess, repo: str, targets: Targets
) -> None:
    host = registry.host
    data = targets.open(f"{host}/{repo}-data").target
    models = targets.open(f"{host}/{repo}-models").target
    assert isinstance(data, RegistryRepository)
    ds = {
        v: push_artifact(data, v, [f"rows of {v}".encode()], artifact_type="application/x-dataset").digest
        for v in ("0.1.0", "0.2.0", "0.3.0", "0.4.0")
    }
    _with_record(
        models,
        "1.0.0",
        {"created": "2026-01-01T00:00:00Z", "datasets": [{"name": "d", "digest": ds["0.1.0"]}]},
    )
    _with_record(
        models, "2.0.0", {"datasets": [{"name": "d", "ref": f"{host}/{repo}-data:0.2.0"}, {"name": "old"}]}
    )
    alone = api.prune(targets, f"{host}/{repo}-data", keep_last=1, dry_run=True)
    assert "--used-by" in alone.notes[0]  # datasets no model here records: say what protects them
    result = api.prune(targets, f"{host}/{repo}-data", keep_last=1, used_by=[f"{host}/{repo}-models"])
    assert not any("--used-by" in n for n in result.notes)
    actions = {d.tag: d.to_json()["action"] for d in result.decisions}
    assert actions == {"0.4.0": "keep", "0.3.0": "delete", "0.2.0": "keep", "0.1.0": "keep"}
    why = {d.tag: d.reasons for d in result.decisions}
    assert why["0.1.0"] == (f"a dataset version recorded by {host}/{repo}-models:1.0.0",)
    assert sorted(data.list_tags()) == ["0.1.0", "0.2.0", "0.4.0"]
    assert gone(data, ds["0.3.0"])


def test_prune_in_the_local_store_drops_tags_and_gc_frees_their_blobs(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")
    iris = StoreRepository(store, "iris")
    other = StoreRepository(store, "other")
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        attach_report(iris, make_release(iris, v, v, weights=f"{v} weights".encode() * 100))
    other.put_manifest("1.0.0", iris.get_manifest("1.0.0"))  # the same release under another name
    with Targets(store_path=store.root, environ={}) as targets:
        result = api.prune(targets, "iris", keep_last=1)
        assert sorted(result.deleted_versions) == ["1.0.0", "1.1.0"]
        assert "modelpack gc" in result.notes[0]
        assert iris.list_tags() == ["1.2.0"] and other.list_tags() == ["1.0.0"]
        freed = api.gc(targets, grace=0)
    assert freed.result.removed_blobs >= 2  # 1.1.0's weights and config, its index, its report
    assert store.has_blob(Descriptor.of(mt.MODEL_WEIGHT_TAR, b"1.0.0 weights" * 100).digest)
    assert not store.has_blob(Descriptor.of(mt.MODEL_WEIGHT_TAR, b"1.1.0 weights" * 100).digest)
    assert iris.referrers(iris.get_manifest("1.2.0").digest)  # what is kept keeps its report


def test_prune_local_prunes_the_pulled_copies_of_a_registry_repository(tmp_path: Path) -> None:
    with Targets(store_path=tmp_path / "store", environ={}) as targets:
        pulled = targets.open("127.0.0.1:5000/acme/iris", local=True, must_exist=False).target
        for v in ("1.0.0", "1.1.0", "1.2.0"):
            make_release(pulled, v, v)
        result = api.prune(targets, "127.0.0.1:5000/acme/iris", keep_last=2, local=True)
        assert result.deleted_versions == ("1.0.0",)
        assert pulled.list_tags() == ["1.1.0", "1.2.0"]
        assert targets.store.list_tags() == [
            "127.0.0.1:5000/acme/iris:1.1.0",
            "127.0.0.1:5000/acme/iris:1.2.0",
        ]


def test_an_environment_moved_while_planning_stops_prune_before_any_delete(
    registry: RegistryProcess, repo: str, targets: Targets
) -> None:
    r = populate(registry.host, repo, targets)
    place = Place(r.target, None, r.ref)
    seen = read_repository(place)
    decided = plan(seen.versions, facts(place, seen, 1, ()), Rule(keep_last=0))
    assert "1.0.0" in {d.tag for d in decided.deleted}
    api.promote(targets, f"{r.ref}:1.0.0", "staging", runtime=runtime())  # a promotion lands meanwhile
    before = sorted(r.target.list_tags())
    with pytest.raises(
        RefusedError, match=r"staging moved from .* while prune was planning; nothing was deleted"
    ):
        execute(place, decided, seen)
    assert sorted(r.target.list_tags()) == before
