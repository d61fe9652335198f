"""modelpack ls: a repository's versions, sorted and filtered by their records (manifest GETs only)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main as run_cli  # in process: the console script is proven in test_cli
from support.release_fixtures import ACCURACY, ON_V3, Pushed, pushed  # noqa: F401  (pushed is the fixture)

from modelpack.errors import UsageError
from modelpack.record import where as q
from modelpack.record.record import DatasetEntry, Metric, Record
from modelpack.registry.client import RegistryRepository
from modelpack.registry.transport import RegistryClient
from modelpack.release.query import Version, read_versions, release_tags, select, subject
from modelpack.release.view import ReleaseView

BY_ACCURACY = sorted(ACCURACY, key=lambda v: ACCURACY[v], reverse=True)  # 1.3.0 1.1.0 1.2.0 1.0.0


def _ls(*args: str) -> list[dict[str, Any]]:
    result = run_cli("ls", *args, "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)["versions"]
    return rows


def test_sort_reads_manifests_in_parallel_and_no_blob(registry: RegistryProcess, pushed: Pushed) -> None:  # noqa: F811
    seen: list[tuple[str, str]] = []
    threads: set[int] = set()
    lock = threading.Lock()

    def hook(request: httpx.Request) -> None:
        with lock:
            seen.append((request.method, request.url.path))
            threads.add(threading.get_ident())

    repo = RegistryRepository(RegistryClient(registry.host, event_hooks={"request": [hook]}), pushed.repo)
    tags = release_tags(repo.list_tags())
    assert not any(t.startswith("sha256-") for t in tags) and "plain-image" in tags
    versions = select(read_versions(repo, tags), sort="accuracy")
    assert [v.tag for v in versions][:4] == [*BY_ACCURACY[:3], versions[3].tag]
    assert {v.tag for v in versions[3:]} == {"1.0.0", "prod"}  # a tie: both name the same release
    assert next(v for v in versions if v.tag == "prod").alias
    assert "plain-image" not in {v.tag for v in versions}
    manifest_gets = [p for m, p in seen if "/manifests/" in p]
    assert all(m == "GET" for m, _ in seen)
    assert all("/manifests/" in p or p.endswith("/tags/list") for _, p in seen)  # never /blobs/
    assert len(manifest_gets) == len(tags)  # one GET per tag
    assert len(threads) > 1  # the GETs ran side by side


def test_cli_sort_descending_and_ascending(pushed: Pushed) -> None:  # noqa: F811
    repo = f"{pushed.host}/{pushed.repo}"
    rows = _ls(repo, "--sort", "accuracy")
    assert [r["tag"] for r in rows[:3]] == BY_ACCURACY[:3]
    assert {r["tag"] for r in rows[3:]} == {"1.0.0", "prod"}
    assert {r["tag"]: r["alias"] for r in rows}["prod"] is True
    assert {r["tag"]: r["version"] for r in rows}["prod"] == "1.0.0"
    asc = _ls(repo, "--sort", "accuracy", "--asc")
    assert [r["tag"] for r in asc[2:]] == BY_ACCURACY[:3][::-1]


def test_which_version_scored_best_on_dataset_v3(pushed: Pushed) -> None:  # noqa: F811
    rows = _ls(f"{pushed.host}/{pushed.repo}", "--sort", "accuracy", "--where", "dataset=iris-test-v3")
    expected = sorted(ON_V3, key=lambda v: ACCURACY[v], reverse=True)
    assert [r["tag"] for r in rows] == expected
    assert all(r["metrics"]["accuracy"]["dataset"] == "iris-test-v3" for r in rows)
    result = run_cli(
        "ls", f"{pushed.host}/{pushed.repo}", "--sort", "accuracy", "--where", "dataset=iris-test-v3"
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[1]
    assert first.split()[0] == expected[0] and "0.97" in first


def test_where_param_and_combined(pushed: Pushed) -> None:  # noqa: F811
    repo = f"{pushed.host}/{pushed.repo}"
    assert {r["tag"] for r in _ls(repo, "--where", "param=lr=0.01")} == {"1.1.0", "1.3.0"}
    both = _ls(repo, "--where", "param=lr=0.1", "--where", "dataset=iris-test-v3")
    assert [r["tag"] for r in both] == ["1.2.0"]
    none = run_cli("ls", repo, "--where", "param=lr=0.5")
    assert none.returncode == 0 and none.stdout == "" and "no release" in none.stderr


def test_where_typed_ranges_tags_notes_and_columns(pushed: Pushed) -> None:  # noqa: F811
    repo = f"{pushed.host}/{pushed.repo}"
    assert {r["tag"] for r in _ls(repo, "--where", "param.lr<0.05")} == {"1.1.0", "1.3.0"}
    assert {r["tag"] for r in _ls(repo, "--where", "param=lr=1e-2")} == {"1.1.0", "1.3.0"}  # not text
    assert {r["tag"] for r in _ls(repo, "--where", "tag=prod")} == {"1.0.0", "prod"}  # tags of one digest
    bare = run_cli("ls", repo, "--where", "lr<0.05", "--json")
    assert bare.returncode == 0, bare.stderr
    body = json.loads(bare.stdout)
    assert {r["tag"] for r in body["versions"]} == {"1.1.0", "1.3.0"}
    assert body["notes"] == ["--where lr<0.05: 'lr' is a param, not a metric: compared as param.lr"]
    table = run_cli("ls", repo, "--where", "lr<0.05", "--columns", "lr,seed", "--sort", "accuracy")
    assert table.returncode == 0, table.stderr
    assert "'lr' is a param" in table.stderr
    head, first, second = table.stdout.splitlines()[:3]
    assert head.split()[:4] == ["TAG", "ACCURACY", "LR", "SEED"]
    assert first.split()[:2] == ["1.3.0", "0.97"] and first.split()[3:5] == ["0.01", "42"]  # (on dataset)
    assert second.split()[0] == "1.1.0"
    typo = run_cli("ls", repo, "--columns", "seeed")
    assert typo.returncode == 2 and "did you mean 'seed'" in typo.stderr, typo.stderr


def test_plain_ls_lists_tags_without_reading_records(pushed: Pushed) -> None:  # noqa: F811
    result = run_cli("ls", f"{pushed.host}/{pushed.repo}")
    assert result.returncode == 0, result.stderr
    tags = set(result.stdout.split())
    assert tags == {*ACCURACY, "prod", "plain-image"}  # the referrers fallback tag is hidden


def test_ls_local_store_and_layout(pushed: Pushed) -> None:  # noqa: F811
    store = str(pushed.store.root)
    local = _ls("iris-onnx", "--store", store, "--sort", "accuracy")
    assert [r["tag"] for r in local] == BY_ACCURACY
    layout = _ls(f"oci:{store}", "--sort", "accuracy")
    tags = [r["tag"] for r in layout]
    assert tags[:4] == [f"iris-onnx:{v}" for v in BY_ACCURACY]
    assert "foreign" not in tags and "house-prices:0.1.0-index" in tags


def test_unknown_repository_and_bad_where(pushed: Pushed) -> None:  # noqa: F811
    result = run_cli("ls", f"{pushed.host}/t/does-not-exist")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "does-not-exist" in result.stderr
    bad = run_cli("ls", f"{pushed.host}/{pushed.repo}", "--where", "colour=blue")
    assert bad.returncode == 2 and "no version records the metric or param 'colour'" in bad.stderr
    odd = run_cli("ls", f"{pushed.host}/{pushed.repo}", "--where", "dataset")
    assert odd.returncode == 2 and "tag=NAME, dataset=NAME" in odd.stderr
    tagged = run_cli("ls", pushed.ref("1.0.0"))
    assert tagged.returncode == 2 and "not a release" in tagged.stderr


def _rec(version: str, metrics: dict[str, Metric], datasets: tuple[str, ...] = (), **kw: Any) -> Record:
    """Dataset NAME gets the hash sha256:<its last character, 64 times>."""
    return Record(
        name="m",
        version=version,
        created="2024-01-01T00:00:00Z",
        metrics=metrics,
        datasets=tuple(DatasetEntry(n, f"sha256:{n[-1] * 64}", 1, 1) for n in datasets),
        **kw,
    )


def _sub(record: Record) -> q.Subject:
    from modelpack.oci import mediatypes as mt
    from modelpack.oci.model import Descriptor

    bundle = Descriptor(mt.OCI_MANIFEST, "sha256:" + "0" * 64, 1)
    return subject(Version("t", ReleaseView(bundle.digest, bundle.media_type, False, record, bundle, None)))


def _m(text: str, record: Record, metric: str | None = None) -> bool:
    return q.matches(q.parse(text), _sub(record), metric)


def test_where_dataset_rules() -> None:
    on_v3 = _rec("1", {"acc": Metric(0.9, "v3")}, ("v3",))
    other = _rec("2", {"acc": Metric(0.9, "v2"), "loss": Metric(0.1, "v3")}, ("v2", "v3"))
    unlabelled = _rec("3", {"acc": Metric(0.9)}, ("v3",))
    assert _m("dataset=v3", on_v3, "acc")
    assert not _m("dataset=v3", other, "acc")  # acc was measured on v2, whatever else v3 served for
    assert _m("dataset=v3", other)  # without a sorted metric: some metric was measured on v3
    assert _m("dataset=v3", unlabelled, "acc")  # no dataset on the metric: the record lists v3
    by_hash = "dataset=sha256:33333333"  # v3's hash, as a dataset version may be named
    assert _m(by_hash, on_v3) and _m(by_hash, on_v3, "acc")
    assert not _m(by_hash, _rec("4", {"acc": Metric(0.9, "v2")}, ("v2",)), "acc")
    assert not _m("dataset=sha256:333", on_v3)  # too short a prefix to mean anything


def test_where_param_typing_and_parse_errors() -> None:
    r = _rec("1", {}, params={"lr": 0.1, "opt": {"name": "adam"}, "shuffle": True, "epochs": 3})
    assert _m("param=lr=0.10", r)
    assert _m("param=opt.name=adam", r)
    assert _m("param=shuffle=true", r)
    assert _m("param=epochs=3.0", r)
    assert not _m("param=lr=0.2", r)
    assert not _m("param=missing=1", r)
    for bad in ("dataset=", "param=lr", "param.=1", "dataset", "lr<abc", "metric.acc=high"):
        with pytest.raises(UsageError):
            q.parse(bad)


def test_release_tags_hides_referrer_fallback_tags() -> None:
    hexd = "a" * 64
    assert release_tags(["1.0", f"sha256-{hexd}", f"sha256-{hexd}.sig", "sha256-short", "prod"]) == [
        "1.0",
        "prod",
        "sha256-short",
    ]


def test_release_tags_are_in_version_order_then_the_rest() -> None:
    tags = ["prod", "1.10.0", "1.2.0", "v2", "latest", "1.2.0-rc1", "0.9"]
    assert release_tags(tags) == ["0.9", "1.2.0-rc1", "1.2.0", "1.10.0", "v2", "latest", "prod"]


def test_unknown_sort_metric_is_an_error_with_a_suggestion(pushed: Pushed) -> None:  # noqa: F811
    bad = run_cli("ls", f"{pushed.host}/{pushed.repo}", "--sort", "acuracy")
    assert bad.returncode == 2 and "did you mean 'accuracy'" in bad.stderr, bad.stderr
    gate = run_cli("ls", f"{pushed.host}/{pushed.repo}", "--where", "acurracy>=0.9")
    assert gate.returncode == 2 and "did you mean 'accuracy'" in gate.stderr, gate.stderr


def test_where_takes_gates_on_record_and_test_report_metrics(pushed: Pushed) -> None:  # noqa: F811
    from modelpack.evidence.evidence import attach
    from modelpack.oci import mediatypes as mt
    from modelpack.oci.model import Descriptor
    from modelpack.targets import Targets

    repo = f"{pushed.host}/{pushed.repo}"
    best = _ls(repo, "--where", "accuracy>=0.95", "--sort", "accuracy")
    assert [r["tag"] for r in best] and all(r["metrics"]["accuracy"]["value"] >= 0.95 for r in best)
    with Targets() as targets:
        target = pushed.repository(targets)
        for version, p95 in (("1.0.0", "3.5"), ("1.1.0", "9")):
            raw = target.get_manifest(version)
            attach(
                target,
                Descriptor(raw.media_type, raw.digest, len(raw.raw)),
                mt.TEST_REPORT_ARTIFACT,
                b"{}",
                "application/json",
                {
                    "dev.modelpack.test.passed": "true",
                    "dev.modelpack.test.created": "2026-12-01T00:00:00Z",
                    "dev.modelpack.test.metric.latency_p95_ms": p95,
                },
            )
    fast = _ls(repo, "--where", "latency_p95_ms<=5")
    assert {r["version"] for r in fast} == {"1.0.0"}  # with any alias tag naming it
    assert fast[0]["test"] == {"passed": True, "metrics": {"latency_p95_ms": 3.5}}
    by_latency = _ls(repo, "--sort", "latency_p95_ms", "--asc")
    assert [r["version"] for r in by_latency if r["tag"] == r["version"]][:2] == ["1.0.0", "1.1.0"]


def test_environment_tags_are_marked(pushed: Pushed, tmp_path: Path) -> None:  # noqa: F811
    repo = f"{pushed.host}/{pushed.repo}"
    env = {"MODELPACK_ACTOR": "ci"}
    done = run_cli("promote", pushed.ref("1.0.0"), "canary", "--force", "--reason", "mark", env=env)
    assert done.returncode == 0, done.stderr
    plain = run_cli("ls", repo)
    assert "canary  (environment)" in plain.stdout.splitlines()
    assert "prod" in plain.stdout.split()  # a hand-made tag with no history is not marked
    rows = {r["tag"]: r for r in _ls(repo)}
    assert rows["canary"]["environment"] is True and rows["prod"]["environment"] is False
    from modelpack.targets import Targets

    with Targets() as targets:  # the repository is shared by this module's tests: leave it as it was
        pushed.repository(targets).delete_tag("canary")
