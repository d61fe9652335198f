"""A repository for the portal tests: real builds pushed to the session registry, test reports attached,
promotions and a rollback in two environments, and hostile text in a metric name, a reason and an actor."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from modelpack import api
from modelpack.environment.move import Runtime
from modelpack.evidence import evidence
from modelpack.oci.model import Descriptor
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.cases import CaseResult
from modelpack.testing.gates import GateResult, Latency
from modelpack.testing.report import ReleaseInfo, TestReport, attach_report
from support.places import fake_clock
from support.release_fixtures import ENV, EXAMPLES, build, index_release, push, variant

HOSTILE_METRIC = "<script>alert('metric')</script>"
HOSTILE_REASON = "<img src=x onerror=alert('reason')><b>bold</b>"
HOSTILE_ACTOR = "mallory\x1b[31m red\x1b[0m"
F1 = {"1.0.0": 0.88, "1.1.0": 0.93, "1.2.0": 0.91}
P95 = {"1.0.0": 4.0, "1.1.0": 6.5, "1.2.0": 3.2}
HOSTILE_COLUMN = "<script>alert('column')</script>"
# Training histories (CSV, over step): 1.0.0 has none; 1.2.0 logs a column with a hostile name.
HISTORY = {
    "1.1.0": "step,loss,val_acc\n0,0.9,\n10,0.6,0.8\n20,0.4,0.9\n",
    "1.2.0": f"step,loss,{HOSTILE_COLUMN}\n0,0.8,1\n10,0.5,2\n20,0.3,3\n30,0.2,4\n",
}
SIGNATURE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@dataclass(frozen=True)
class PortalRepo:
    repo: str  # HOST/REPO: iris-onnx 1.0.0-1.2.0, bundle-only releases, staging and prod
    digests: dict[str, str]
    index_repo: str  # HOST/REPO: custom-handler 0.1.0 as an index over an image and the bundle, in prod
    data_repo: str  # HOST/REPO: a dataset artifact (v1, labelled) that 1.1.0 is built with
    other_data: str  # HOST/REPO:v1, a dataset 1.2.0 is built with, in no portal
    data_digest: str  # of data_repo:v1


def runner_report(version: str, digest: str, media_type: str, size: int, passed: bool) -> TestReport:
    """A report as the runner writes it (its own types), with one case failing when `passed` is False."""
    p95 = P95[version]
    return TestReport(
        reference=f"portal:{version}",
        release=ReleaseInfo(digest, media_type, size, "iris-onnx", version, digest, None),
        runtime="local",
        runtime_note="portal test fixture",
        started=f"2026-12-01T0{len(version)}:00:00Z",
        finished=f"2026-12-01T0{len(version)}:00:01Z",
        cases=(
            CaseResult("setosa", True, ()),
            CaseResult("virginica", passed, () if passed else ("class 2 expected, got 1",)),
        ),
        gates=(GateResult("f1_macro >= 0.85", F1[version], True, ""),),
        latency=Latency(50, p95 / 2, p95, p95 * 1.5),
        image_size_mb=None,
    )


def make_portal_repo(tmp: Path, host: str) -> PortalRepo:
    store = LayoutStore(tmp / "store")
    repo = f"{host}/t/portal-{secrets.token_hex(3)}"
    digests: dict[str, str] = {}
    data_repo = f"{host}/t/portal-data-{secrets.token_hex(3)}"
    other_data = f"{host}/t/elsewhere-{secrets.token_hex(3)}:v1"
    test_csv = EXAMPLES / "iris-onnx" / "data" / "iris-test.csv"
    with Targets(store_path=tmp / "store", environ={}) as targets:
        data_digest = api.dataset_push(targets, test_csv, f"{data_repo}:v1", label="species").digest
        api.dataset_push(targets, test_csv, other_data)
    refs = {"1.1.0": f"{data_repo}:v1", "1.2.0": other_data}
    for i, (version, f1) in enumerate(F1.items()):
        metrics = {"accuracy": f1 + 0.01, "f1_macro": f1, "train_loss": round(1 - f1, 3)}  # no gate on loss
        if version == "1.2.0":
            metrics[HOSTILE_METRIC] = 0.5
        project = variant(
            tmp,
            "iris-onnx",
            metrics=metrics,
            metrics_dataset="iris-test-v3" if version != "1.0.0" else None,
            model_extra=b"\0" * i,
            params={"lr": 0.1 / (i + 1), "seed": 42},
            history=HISTORY.get(version),
            dataset_ref=refs.get(version),
        )
        with Targets(store_path=tmp / "store", environ={}) as targets:
            result = api.build(targets, project, version=version, environ=ENV).bundle
        digests[version] = push(store, result.tag, f"{repo}:{version}")
    with Targets(store_path=tmp / "store", environ={}) as targets:
        target = targets.open(repo).target
        for version, digest in digests.items():
            raw = target.get_manifest(digest)
            passed = version != "1.2.0"  # the newest fails a case: shown red, promoted by force
            report = runner_report(version, digest, raw.media_type, len(raw.raw), passed)
            attach_report(target, report)
        key = api.keygen(tmp / "portal-key").private_key
        api.sign(targets, f"{repo}:1.1.0", str(key))  # the release and the model signature, for real
        # a sigstore bundle that is no signature `sign` writes (no predicate): not "signed"
        raw = target.get_manifest(digests["1.2.0"])
        evidence.attach(
            target,
            Descriptor(raw.media_type, raw.digest, len(raw.raw)),
            SIGNATURE_TYPE,
            b"{}",
            "application/json",
        )
        clock = fake_clock(step=3600.0)

        def rt(actor: str) -> Runtime:
            return Runtime(clock=clock, environ={}, actor=actor)

        api.promote(targets, f"{repo}:1.0.0", "staging", reason="first", runtime=rt("alice"))
        api.promote(targets, f"{repo}:1.0.0", "prod", reason="launch", runtime=rt("alice"))
        api.promote(targets, f"{repo}:1.1.0", "staging", reason="better f1", runtime=rt("bob"))
        api.promote(
            targets, f"{repo}:1.2.0", "staging", force=True, reason=HOSTILE_REASON, runtime=rt(HOSTILE_ACTOR)
        )
        api.promote(targets, f"{repo}:1.1.0", "prod", reason="after staging", runtime=rt("bob"))
        api.rollback(targets, repo, "staging", reason="latency", runtime=rt("carol"))
    index_repo = f"{host}/t/portal-index-{secrets.token_hex(3)}"
    handler = build(EXAMPLES / "custom-handler", store, "0.1.0")
    index_release(store, handler, "house-prices:0.1.0-index")
    index_digest = push(store, "house-prices:0.1.0-index", f"{index_repo}:0.1.0")
    with Targets(store_path=tmp / "store", environ={}) as targets:
        target = targets.open(index_repo).target
        raw = target.get_manifest(index_digest)
        attach_report(target, runner_report("1.0.0", index_digest, raw.media_type, len(raw.raw), True))
        # the model signature alone: a referrer of the bundle manifest, not of the index the tag names
        api.sign(targets, f"{index_repo}:0.1.0", str(key), release_signature=False)
        api.promote(targets, f"{index_repo}:0.1.0", "prod", reason="first", runtime=rt("alice"))
    return PortalRepo(repo, digests, index_repo, data_repo, other_data, data_digest)
