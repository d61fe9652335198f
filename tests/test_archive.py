"""`modelpack archive`: a version label set on many versions at once and cleared again, with who and why,
shown by ls and the portal, and respected by prune (archived versions take no --keep-last place); on the
real registry."""

from __future__ import annotations

import json
from pathlib import Path

from support.clirun import run_main
from support.places import attach_report, make_release

from modelpack import api
from modelpack.evidence import labels
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Index, parse
from modelpack.oci.target import RawManifest
from modelpack.record.record import Record
from modelpack.retention.retention import Facts, Rule, Version, plan

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]


def _populate(registry_repo: str, tmp_path: Path) -> dict[str, str]:
    with api.Targets(store_path=tmp_path / "store", environ={}) as targets:
        target = targets.open(registry_repo).target
        digests = {}
        for i, v in enumerate(VERSIONS):
            base = make_release(target, f"{v}-base", v)
            index = parse(base.raw, base.media_type)
            assert isinstance(index, Index)
            record = Record(name="m", version=v, created=f"2026-12-0{i + 1}T00:00:00Z")
            ann = {mt.ANN_VERSION: v, mt.ANN_RECORD: record.to_bytes().decode()}
            doc = Index(manifests=index.manifests, annotations=ann)
            release = RawManifest(doc.to_bytes(), doc.media_type, doc.digest)
            target.put_manifest(v, release)
            target.delete_tag(f"{v}-base")
            attach_report(target, release)
            digests[v] = release.digest
    return digests


def test_archive_many_versions_shown_filtered_cleared_and_pruned(registry_repo: str, tmp_path: Path) -> None:
    _populate(registry_repo, tmp_path)
    env = {"MODELPACK_ACTOR": "ops@ci"}
    done = run_main(
        "archive", registry_repo, "1.2.0", "1.3.0", "--reason", "v1 labels were wrong", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [v["tag"] for v in doc["versions"]] == ["1.2.0", "1.3.0"] and doc["who"] == "ops@ci" and doc["on"]

    rows = {r["tag"]: r for r in json.loads(run_main("ls", registry_repo, "--json").stdout)["versions"]}
    assert rows["1.3.0"]["labels"]["archived"]["reason"] == "v1 labels were wrong"
    assert rows["1.0.0"]["labels"] == {}
    shown = run_main("ls", registry_repo, "--where", "tag=archived")
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[0] for line in shown.stdout.splitlines()[1:]] == ["1.2.0", "1.3.0"]
    assert "archived by ops@ci on " in shown.stdout and "v1 labels were wrong" in shown.stdout
    with api.Targets(environ={}) as targets:
        entries = {e.tag: e.to_json() for e in api.catalog(targets, registry_repo).entries}
    assert set(entries["1.2.0"]["labels"]) == {"archived"} and entries["1.1.0"]["labels"] == {}

    # prune --keep-last 1 keeps the newest live version (1.1.0), not the newest archived one
    prune = json.loads(run_main("prune", registry_repo, "--keep-last", "1", "--json", env=env).stdout)
    actions = {d["tag"]: d["action"] for d in prune["versions"]}
    assert actions == {"1.3.0": "delete", "1.2.0": "delete", "1.1.0": "keep", "1.0.0": "delete"}
    why = {d["tag"]: d["reasons"] for d in prune["versions"]}
    assert (
        why["1.3.0"][0].startswith("archived by ops@ci on ")
        and "take no --keep-last place" in why["1.3.0"][0]
    )

    cleared = run_main(
        "archive", registry_repo, "1.3.0", "--clear", "--reason", "needed for the audit", env=env
    )
    assert cleared.returncode == 0, cleared.stderr
    rows = {r["tag"]: r for r in json.loads(run_main("ls", registry_repo, "--json").stdout)["versions"]}
    assert rows["1.3.0"]["labels"] == {} and "archived" in rows["1.2.0"]["labels"]


def test_archive_refuses_without_a_reason_and_labels_nothing_on_a_typo(
    registry_repo: str, tmp_path: Path
) -> None:
    digests = _populate(registry_repo, tmp_path)
    no_reason = run_main("archive", registry_repo, "1.0.0")
    assert no_reason.returncode == 2 and "--reason TEXT is required" in no_reason.stderr
    typo = run_main("archive", registry_repo, "1.0.0", "9.9.9", "--reason", "old")
    assert typo.returncode == 1 and "9.9.9 does not exist: nothing was labelled" in typo.stderr
    with api.Targets(environ={}) as targets:
        target = targets.open(registry_repo).target
        assert labels.read(target, digests["1.0.0"]) == {}  # checked before anything was written


def test_the_newest_label_event_decides() -> None:
    from modelpack.oci.model import Descriptor

    def d(on: bool, when: str, n: int) -> Descriptor:
        ann = {
            labels.ANN_LABEL: "archived",
            labels.ANN_STATE: "set" if on else "cleared",
            labels.ANN_WHEN: when,
        }
        return Descriptor("m", f"sha256:{n:064x}", 1, artifact_type=labels.LABEL_TYPE, annotations=ann)

    assert set(labels.current([d(True, "2026-01-01", 1), d(False, "2026-01-02", 2)])) == set()
    assert set(labels.current([d(False, "2026-01-01", 1), d(True, "2026-01-02", 2)])) == {"archived"}
    live = [Version("2.0.0", "sha256:" + "2" * 64), Version("1.0.0", "sha256:" + "1" * 64)]
    archived = Version("3.0.0", "sha256:" + "3" * 64, archived="archived by a on 2026-01-01: x")
    p = plan([*live, archived], Facts(environments={"prod": archived.digest}), Rule(keep_last=1))
    assert {x.tag: x.keep for x in p.decisions} == {"3.0.0": True, "2.0.0": True, "1.0.0": False}  # prod wins
