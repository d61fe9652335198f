"""`prune` on a real distribution registry (deletes enabled, and the delete-disabled one), the local store and
through the CLI: exactly the expected tags remain, rollback targets still roll back, evidence goes with
its release, a refusal midway says what was deleted and keeps the rest."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli
from support.places import attach_report, make_release, runtime
from support.registry_helpers import client_for, push_artifact

from modelpack import api
from modelpack.errors import NotFoundError, PromotionError, RegistryError
from modelpack.oci import mediatypes as mt
from modelpack.oci.layout import LayoutStore
from modelpack.oci.model import Descriptor, Index, parse
from modelpack.oci.storerepo import StoreRepository
from modelpack.oci.target import RawManifest, Target
from modelpack.registry.client import RegistryRepository
from modelpack.registry.referrers import fallback_tag
from modelpack.release.evidence import passing_report, read_payload
from modelpack.release.history import anchor
from modelpack.release.place import Place
from modelpack.release.prune import execute, facts, read_repository
from modelpack.release.retention import Rule, plan
from modelpack.targets import Targets

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0"]


@dataclass
class Repo:
    host: str
    name: str
    target: RegistryRepository
    digests: dict[str, str]  # tag -> digest
    reports: dict[str, str]  # version -> its test report's digest

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.name}"


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    with Targets(store_path=tmp_path / "store", environ={}) as t:
        yield t


def _populate(host: str, name: str, targets: Targets) -> Repo:
    """Eight tested releases; 1.2.1 shares 1.2.0's digest, 0.9.0 shares 1.7.0's; prod was promoted 1.0.0,
    1.3.0, 1.4.0, rolled back (to 1.3.0), promoted 1.5.0; staging runs 1.6.0."""
    where = targets.open(f"{host}/{name}")
    assert isinstance(where.target, RegistryRepository)
    target = where.target
    digests: dict[str, str] = {}
    reports: dict[str, str] = {}
    for v in VERSIONS:
        release = make_release(target, v, v)
        digests[v] = release.digest
        reports[v] = attach_report(target, release).digest
    for alias, of in (("1.2.1", "1.2.0"), ("0.9.0", "1.7.0")):
        target.put_manifest(alias, target.get_manifest(of))
        digests[alias] = digests[of]
    ref = f"{host}/{name}"
    rt = runtime()
    for v in ("1.0.0", "1.3.0", "1.4.0"):
        api.promote(targets, f"{ref}:{v}", "prod", runtime=rt)
    api.rollback(targets, ref, "prod", runtime=rt)
    api.promote(targets, f"{ref}:1.5.0", "prod", runtime=rt)
    api.promote(targets, f"{ref}:1.6.0", "staging", runtime=rt)
    return Repo(host, name, target, digests, reports)


def _gone(target: Target, digest: str) -> bool:
    try:
        target.get_manifest(digest)
    except NotFoundError:
        return True
    return False


def _children(target: Target, digest: str) -> list[str]:
    raw = target.get_manifest(digest)
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Index)
    return [d.digest for d in doc.manifests]


def test_prune_keeps_environments_rollback_targets_patterns_and_shared_digests(
    registry: RegistryProcess, repo: str, targets: Targets
) -> None:
    r = _populate(registry.host, repo, targets)
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
        assert _gone(r.target, r.digests[v])
        assert _gone(r.target, r.reports[v])  # its test report went with it
        assert all(_gone(r.target, c) for c in bundles[v])  # and its bundle manifest
    for v in kept:
        assert not _gone(r.target, r.reports[v]) and not any(_gone(r.target, c) for c in bundles[v])
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
    r = _populate(registry.host, repo, targets)
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
    r = _populate(registry.host, repo, targets)
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
    assert not _gone(r.target, r.digests["1.0.0"]) and not _gone(r.target, r.reports["1.0.0"])
    assert set(r.target.list_tags()) == before - {"0.9.0"}

    again = api.prune(targets, r.ref, keep_last=2, keep=["1.1.*"], history_depth=1)
    assert again.failure is None
    assert sorted(again.deleted_versions) == ["1.0.0", "1.2.0", "1.2.1", "1.4.0"]


def test_a_registry_without_deletes_gives_one_clear_line_and_nothing_changes(
    registry_without_deletes: RegistryProcess, repo: str, targets: Targets
) -> None:
    host = registry_without_deletes.host
    where = targets.open(f"{host}/{repo}")
    for v in ("1.0.0", "1.1.0"):
        attach_report(where.target, make_release(where.target, v, v))
    before = sorted(where.target.list_tags())
    with pytest.raises(RegistryError) as e:
        api.prune(targets, f"{host}/{repo}", keep_last=1)
    assert "does not allow deletes (HTTP 405)" in e.value.message and "\n" not in e.value.message
    assert "storage.delete.enabled" in str(e.value.hint)
    assert sorted(where.target.list_tags()) == before

    done = run_cli("prune", f"{host}/{repo}", "--keep-last", "1", "--yes", stdin="")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "does not allow deletes" in done.stderr and "Traceback" not in done.stderr


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
    result = api.prune(targets, f"{host}/{repo}-data", keep_last=1, used_by=[f"{host}/{repo}-models"])
    actions = {d.tag: d.to_json()["action"] for d in result.decisions}
    assert actions == {"0.4.0": "keep", "0.3.0": "delete", "0.2.0": "keep", "0.1.0": "keep"}
    why = {d.tag: d.reasons for d in result.decisions}
    assert why["0.1.0"] == (f"a dataset version recorded by {host}/{repo}-models:1.0.0",)
    assert sorted(data.list_tags()) == ["0.1.0", "0.2.0", "0.4.0"]
    assert _gone(data, ds["0.3.0"])


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


def test_cli_prune_is_a_dry_run_without_a_terminal_unless_yes_and_its_json_has_the_schema(
    registry: RegistryProcess, repo: str, targets: Targets, tmp_path: Path
) -> None:
    r = _populate(registry.host, repo, targets)
    before = sorted(r.target.list_tags())
    env = {"MODELPACK_STORE": str(tmp_path / "cli-store")}
    dry = run_cli("prune", r.ref, "--keep-last", "2", "--history", "1", "--json", env=env, stdin="")
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["dryRun"] is True and out["deleted"] == [] and out["rule"]["historyDepth"] == 1
    assert {v["tag"] for v in out["versions"] if v["action"] != "keep"} == {
        "0.9.0",
        "1.0.0",
        "1.1.0",
        "1.2.0",
        "1.2.1",
        "1.4.0",
    }
    assert sorted(r.target.list_tags()) == before

    human = run_cli("prune", r.ref, "--keep-last", "2", "--dry-run", "--yes", env=env, stdin="")
    assert human.returncode == 0 and "prod names it now" in human.stdout and "dry run" in human.stderr
    assert sorted(r.target.list_tags()) == before

    done = run_cli(
        "prune",
        r.ref,
        "--keep-last",
        "2",
        "--keep",
        "1.1.*",
        "--history",
        "1",
        "--yes",
        "--json",
        env=env,
        stdin="",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["deletedVersions"]) == ["0.9.0", "1.0.0", "1.2.0", "1.2.1", "1.4.0"]
    assert "1.0.0" not in r.target.list_tags() and "1.1.0" in r.target.list_tags()


@pytest.mark.parametrize("age", ["90", "3 days", "1y", "0d"])
def test_cli_a_bad_age_is_one_line(age: str, tmp_path: Path) -> None:
    done = run_cli("prune", "iris", "--older-than", age, env={"MODELPACK_STORE": str(tmp_path)}, stdin="")
    assert done.returncode == 2
    assert done.stderr.count("\n") <= 2 and "is not an age" in done.stderr and "90d" in done.stderr


def test_cli_prune_without_a_rule_says_which_to_give(tmp_path: Path) -> None:
    done = run_cli("prune", "iris", env={"MODELPACK_STORE": str(tmp_path)}, stdin="")
    assert done.returncode == 2 and "--keep-last N, --older-than AGE" in done.stderr


def _whole(target: Target, tag: str) -> bool:
    """Every manifest and blob the tag reaches can be read back (verified against its digest)."""
    try:
        stack = [target.get_manifest(tag)]
        while stack:
            raw = stack.pop()
            doc = parse(raw.raw, raw.media_type)
            if isinstance(doc, Index):
                stack += [target.get_manifest(d.digest) for d in doc.manifests]
                continue
            for d in (doc.config, *doc.layers):
                with target.read_blob(d) as chunks:
                    b"".join(chunks)
    except NotFoundError:
        return False
    return True


def _blob_files(reg: RegistryProcess) -> int:
    return sum(1 for _ in (reg.storage / "docker/registry/v2/blobs").rglob("data"))


@pytest.mark.parametrize("untagged", [False, True])
def test_the_registry_gc_docs_retention_md_gives_frees_what_prune_deleted_and_keeps_the_rest(
    registry: RegistryProcess, tmp_path: Path, untagged: bool
) -> None:
    """docs/retention.md: after prune, distribution's `garbage-collect CONFIG` frees the pruned blobs and
    leaves every kept release, report and history event whole; `--delete-untagged` on distribution 2.8
    deletes the untagged children of every index, kept releases included (distribution#3178), which is
    why the docs say not to use it there. If this case starts failing, the registry fixed it: update
    the docs."""
    reg = RegistryProcess(root=tmp_path / "gc-registry", binary=registry.binary)
    reg.start()
    try:
        with Targets(store_path=tmp_path / "store", environ={}) as targets:
            ref = f"{reg.host}/acme/iris"
            target = targets.open(ref).target
            for v in VERSIONS[:5]:
                attach_report(target, make_release(target, v, v, weights=v.encode() * 1000))
            rt = runtime()
            for v in ("1.1.0", "1.2.0"):
                api.promote(targets, f"{ref}:{v}", "prod", runtime=rt)
            before = _blob_files(reg)
            assert sorted(api.prune(targets, ref, keep_last=1).deleted_versions) == ["1.0.0", "1.3.0"]
        reg.stop()
        flags = ["--delete-untagged"] if untagged else []
        gc = subprocess.run(
            [registry.binary, "garbage-collect", str(reg.config_path), *flags],
            capture_output=True,
            check=False,
        )
        assert gc.returncode == 0, gc.stderr[-2000:]
        after = _blob_files(reg)
        reg.start()
        with Targets(store_path=tmp_path / "store", environ={}) as targets:
            target = targets.open(ref).target
            kept = ["1.1.0", "1.2.0", "1.4.0", "prod"]
            if untagged:
                assert not any(_whole(target, t) for t in kept)  # distribution 2.8: every kept release broken
                return
            assert before - after == 12  # per pruned version: index, bundle, config, weights, report, payload
            assert all(_whole(target, t) for t in kept)
            for v in ("1.1.0", "1.2.0", "1.4.0"):
                report = passing_report(target, target.get_manifest(v).digest)
                assert report is not None and read_payload(target, report) == b'{"passed": true}'
            assert api.rollback(targets, ref, "prod", runtime=runtime()).event.version == "1.1.0"
    finally:
        reg.stop()
