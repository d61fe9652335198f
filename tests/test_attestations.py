"""Attestations: the signed in-toto test report, SLSA provenance and the CycloneDX SBOM, as referrers of
the release index in the store and in a real registry; their checks, and what bad evidence gets.

Independent verifiers: cyclonedx-python-lib's strict 1.6 JSON schema validator for the SBOM, and a JSON
schema transcribed from the in-toto and SLSA specs (tests/schemas/in-toto/SOURCE.md) for the statements.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.places import attach_report as attach_old_report
from support.places import make_release, runtime
from support.refusing_proxy import refusing_proxy
from support.registry_helpers import client_for

from modelpack import api
from modelpack.environment.place import Place
from modelpack.environment.promote import promote
from modelpack.errors import RegistryError
from modelpack.evidence import evidence
from modelpack.evidence.attestations import (
    attach_envelope,
    check_provenance,
    check_sbom,
    check_test_evidence,
    listed,
)
from modelpack.image.wheels import TargetPlatform
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor
from modelpack.oci.target import RawManifest, Target
from modelpack.registry.client import RegistryRepository
from modelpack.registry.transport import RetryPolicy
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.cases import CaseResult
from modelpack.testing.gates import GateResult, Latency
from modelpack.testing.report import ReleaseInfo, TestReport, attach_report, statement
from modelpack.trust.dsse import open_envelope
from modelpack.trust.keys import PrivateKey, PublicKey, generate, load_private, load_public

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/iris",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_SHA": "0" * 40,
    "GITHUB_TOKEN": "ghs_secret_never_recorded",
}


def _statement_schema() -> dict[str, Any]:
    return json.loads((SCHEMAS / "in-toto" / "statement-v1.schema.json").read_text())


def _keys(tmp: Path, name: str) -> tuple[PrivateKey, PublicKey]:
    files = generate(tmp / name)
    return load_private(str(files.private), env={}), load_public(str(files.public), env={})


def _payload(target: Target, d: Descriptor) -> tuple[str, bytes]:
    return evidence.read_layer(target, d, max_size=16 * 1024 * 1024)


def _statement_of(target: Target, d: Descriptor) -> dict[str, Any]:
    media_type, raw = _payload(target, d)
    assert media_type == mt.DSSE_ENVELOPE
    return dict(open_envelope(raw).statement())


# -- a git project built with its image -----------------------------------------------------------------


def _git(proj: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=proj,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[PrivateKey, PublicKey, Path]:
    tmp = tmp_path_factory.mktemp("keys")
    private, public = _keys(tmp, "release")
    return private, public, tmp / "release.key"


@pytest.fixture(scope="module")
def built(
    image_store: LayoutStore,
    docker_engine: Any,
    tmp_path_factory: pytest.TempPathFactory,
    keys: tuple[PrivateKey, PublicKey, Path],
) -> tuple[api.BuildResult, Path]:
    """iris-onnx as a git project (remote with a token in it), built in "GitHub Actions", signed."""
    proj = tmp_path_factory.mktemp("git") / "iris-attested"
    shutil.copytree(EXAMPLES / "iris-onnx", proj)
    packfile = proj / "modelpack.yaml"
    packfile.write_text(packfile.read_text().replace("name: iris-onnx", "name: iris-attested", 1))
    _git(proj, "init", "-q", "-b", "main")
    _git(proj, "add", "-A")
    _git(proj, "commit", "-q", "-m", "first")
    _git(proj, "remote", "add", "origin", "https://bot:hunter2@git.example.com/acme/iris.git")
    result = api.build(
        Targets(store_path=image_store.root),
        proj,
        image=True,
        base=docker_engine.base_ref,
        version="3.1.4",
        environ={**EPOCH, **GITHUB},
        key=str(keys[2]),
    )
    return result, proj


@pytest.mark.engine
def test_a_build_attaches_signed_provenance_naming_its_inputs(
    built: tuple[api.BuildResult, Path], image_store: LayoutStore, keys: tuple[PrivateKey, PublicKey, Path]
) -> None:
    result, proj = built
    assert result.index is not None and result.image is not None
    found = [
        d for d in image_store.referrers(result.index.digest) if d.artifact_type == mt.PROVENANCE_ARTIFACT
    ]
    assert len(found) == 1 and found[0].annotations[mt.ANN_SIGNER] == keys[1].keyid
    doc = _statement_of(image_store, found[0])
    jsonschema.validate(doc, _statement_schema())
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    assert {s["digest"]["sha256"] for s in doc["subject"]} == {
        d.split(":")[1]
        for d in (result.index.digest, result.image.manifest.digest, result.bundle.manifest.digest)
    }
    deps = {d["name"]: d for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]}
    commit = _git(proj, "rev-parse", "HEAD")
    assert deps["source"]["digest"] == {"gitCommit": commit}
    assert deps["source"]["uri"] == "git+https://git.example.com/acme/iris.git"  # the token is scrubbed
    record = result.bundle.record
    for ds in record.datasets:
        assert deps[f"dataset:{ds.name}"]["digest"] == {"sha256": (ds.sha256 or "").split(":")[-1]}
    assert record.lock is not None
    assert deps[f"lockfile:{record.lock.path}"]["digest"]["sha256"] == record.lock.sha256.split(":")[-1]
    assert deps["base-image"]["digest"]["sha256"] == result.image.base.digest.split(":")[1]
    run = doc["predicate"]["runDetails"]
    assert run["builder"]["id"] == "https://github.com/actions/runner/github-hosted"
    assert run["builder"]["version"]["modelpack"]
    assert run["metadata"]["invocationId"] == "https://github.com/acme/iris/actions/runs/4242/attempts/2"
    assert "ghs_secret" not in json.dumps(doc) and "hunter2" not in json.dumps(doc)

    check = check_provenance(image_store, result.index.digest, [keys[1]])
    assert check.ok and commit[:12] in check.detail and check.signer == keys[1].keyid, check
    other = _keys(proj.parent, "other")[1]
    refused = check_provenance(image_store, result.index.digest, [other])
    assert not refused.ok and "not signed by a given key" in refused.detail


@pytest.mark.engine
def test_the_sbom_validates_as_cyclonedx_1_6_with_the_lock_and_the_model(
    built: tuple[api.BuildResult, Path], image_store: LayoutStore
) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    result, _ = built
    assert result.index is not None and result.image is not None
    (sbom_desc,) = [
        d for d in image_store.referrers(result.index.digest) if d.artifact_type == mt.SBOM_ARTIFACT
    ]
    media_type, raw = _payload(image_store, sbom_desc)
    assert media_type == mt.CYCLONEDX_JSON
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(raw.decode()) is None
    doc = json.loads(raw)
    assert doc["specVersion"] == "1.6"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for c in doc["components"]:
        by_type.setdefault(c["type"], []).append(c)
    lock = result.bundle.lock
    expected = {p.name: p for p in lock.select(TargetPlatform(python="3.11").marker_environment())}
    libraries = {c["name"]: c for c in by_type["library"]}
    assert set(libraries) == set(expected) and expected
    for name, p in expected.items():
        c = libraries[name]
        assert c["version"] == p.version and c["purl"] == f"pkg:pypi/{name}@{p.version}"
        assert sorted(f"sha256:{h['content']}" for h in c["hashes"]) == sorted(p.hashes)
    (base,) = [c for c in by_type["container"] if c.get("bom-ref") == "base-image"]
    assert base["hashes"] == [{"alg": "SHA-256", "content": result.image.base.digest.split(":")[1]}]
    (model,) = by_type["machine-learning-model"]
    record = result.bundle.record
    metrics = {m["type"]: m for m in model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]}
    assert {k: float(m["value"]) for k, m in metrics.items()} == {
        k: m.value for k, m in record.metrics.items()
    }
    data = {c["name"]: c for c in by_type["data"]}
    assert set(data) == {d.name for d in record.datasets}
    for d in record.datasets:
        assert data[d.name]["hashes"][0]["content"] == (d.sha256 or "").split(":")[-1]
    refs = {x["ref"] for x in model["modelCard"]["modelParameters"]["datasets"]}
    assert refs == {c["bom-ref"] for c in by_type["data"]}
    params = {p["name"] for p in model["modelCard"]["properties"]}
    assert params == {f"modelpack:param:{k}" for k in record.params}
    check = check_sbom(image_store, result.index.digest)
    assert check.ok and f"{len(expected)} Python packages" in check.detail, check


@pytest.mark.engine
def test_provenance_and_sbom_travel_with_push_and_pull_and_inspect_lists_them(
    built: tuple[api.BuildResult, Path],
    image_store: LayoutStore,
    registry: RegistryProcess,
    tmp_path: Path,
    keys: tuple[PrivateKey, PublicKey, Path],
) -> None:
    result, _ = built
    assert result.index is not None
    dest = f"{registry.host}/attest/iris-attested"
    with Targets(store_path=image_store.root, environ={}) as targets:
        api.push(targets, f"{dest}:3.1.4", source=result.tag)
        remote = targets.open(f"{dest}:3.1.4").target
        assert check_provenance(remote, result.index.digest, [keys[1]]).ok
        assert check_sbom(remote, result.index.digest).ok
    fresh = tmp_path / "fresh"
    with Targets(store_path=fresh, environ={}) as targets:
        api.pull(targets, f"{dest}:3.1.4")
        local = targets.open(f"{dest}:3.1.4", local=True).target
        kinds = sorted(a.kind for a in listed(local, result.index.digest))
    assert kinds == ["provenance", "sbom"]  # a pull carries the build's facts
    with Targets(store_path=fresh, environ={}) as targets:
        api.copy(targets, f"{dest}:3.1.4", f"oci:{tmp_path / 'mirror'}:3.1.4")  # no --referrers
    mirror = LayoutStore(tmp_path / "mirror")
    assert sorted(a.kind for a in listed(mirror, result.index.digest)) == ["provenance", "sbom"]
    assert check_provenance(mirror, result.index.digest, [keys[1]]).ok
    shown = run_main("inspect", f"{dest}:3.1.4", "--json")
    assert shown.returncode == 0, shown.stderr
    attested = {a["kind"]: a for a in json.loads(shown.stdout)["attestations"]}
    assert attested["provenance"]["signer"] == keys[1].keyid and "sbom" in attested
    human = run_main("inspect", f"{dest}:3.1.4")
    line = next(x for x in human.stdout.splitlines() if x.strip().startswith("attested"))
    assert f"signed {keys[1].keyid[:12]}" in line and "sbom sha256:" in line


@pytest.mark.engine
def test_modelpack_test_with_a_key_attaches_a_signed_statement(
    built: tuple[api.BuildResult, Path], image_store: LayoutStore, keys: tuple[PrivateKey, PublicKey, Path]
) -> None:
    result, _ = built
    assert result.index is not None
    cli = run_main(
        "test", result.tag, "--store", str(image_store.root), "--runtime", "local", "--requests", "5",
        "--key", "env://SIGNING_KEY", "--json", env={"SIGNING_KEY": keys[2].read_text()},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    attached = json.loads(cli.stdout)["attached"]
    check = check_test_evidence(image_store, result.index.digest, [keys[1]], runtime="local")
    assert check.ok and check.signer == keys[1].keyid and check.evidence == attached, check
    (desc,) = [
        d for d in image_store.referrers(result.index.digest, evidence.REPORT_TYPE) if d.digest == attached
    ]
    doc = _statement_of(image_store, desc)
    jsonschema.validate(doc, _statement_schema())
    assert doc["subject"][0]["digest"] == {"sha256": result.index.digest.split(":")[1]}
    assert doc["predicate"]["result"] == "PASSED" and doc["predicate"]["modelpack"]["runtime"] == "local"
    assert evidence.passing_report(image_store, result.index.digest) is not None
    bad = run_main("test", result.tag, "--store", str(image_store.root), "--key", "env://NOPE")
    assert bad.returncode == 2 and "NOPE is not set" in bad.stderr.strip().splitlines()[-1]


# -- test evidence on a registry release: round trip, tamper, another digest, old reports ---------------


def _report(
    release: RawManifest, passed: bool = True, finished: str = "2026-12-01T00:00:01.000000Z"
) -> TestReport:
    return TestReport(
        reference="r",
        release=ReleaseInfo(
            release.digest, release.media_type, len(release.raw), "iris", "1.0.0", "sha256:" + "b" * 64, None
        ),
        runtime="local",
        runtime_note="test",
        started="2026-12-01T00:00:00.000000Z",
        finished=finished,
        cases=(CaseResult("one", passed, () if passed else ("wrong",)),),
        gates=(GateResult("accuracy >= 0.9", 0.95, True, "0.95 >= 0.9"),),
        latency=Latency(10, 1.0, 2.0, 3.0),
        image_size_mb=None,
    )


@pytest.fixture
def place(registry: RegistryProcess, repo: str) -> Iterator[Place]:
    with client_for(registry.host) as client:
        yield Place(RegistryRepository(client, repo), None, f"{registry.host}/{repo}")


def test_a_signed_report_round_trips_and_promote_still_reads_it(place: Place, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "ci")
    release = make_release(place.target, "1.0.0", "1.0.0")
    desc = attach_report(place.target, _report(release), private)
    assert desc.annotations[evidence.ANN_PASSED] == "true"  # promote decides from the listing alone
    check = check_test_evidence(place.target, release.digest, [public])
    assert check.ok and check.signer == public.keyid and check.evidence == desc.digest, check
    assert check_test_evidence(place.target, release.digest, []).ok  # no key asked: the subject and result
    assert not check_test_evidence(place.target, release.digest, [public], runtime="docker").ok
    promote(place, "1.0.0", "prod", runtime=runtime())


def test_a_tampered_report_is_refused(place: Place, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "ci")
    release = make_release(place.target, "1.0.0", "1.0.0")
    failed = _report(release, passed=False)
    attach_report(place.target, failed, private)
    assert not check_test_evidence(place.target, release.digest, [public]).ok
    # the failing run's signed envelope with its payload edited to PASSED, attached as a newer report
    (desc,) = place.target.referrers(release.digest, evidence.REPORT_TYPE)
    envelope = json.loads(_payload(place.target, desc)[1])
    doc = json.loads(base64.b64decode(envelope["payload"]))
    doc["predicate"]["result"] = "PASSED"
    envelope["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    newer = replace(failed, finished="2026-12-01T00:00:09.000000Z")
    annotations = {**replace(newer, cases=(CaseResult("one", True, ()),)).annotations()}
    subject = Descriptor(release.media_type, release.digest, len(release.raw))
    evidence.attach(
        place.target,
        subject,
        evidence.REPORT_TYPE,
        json.dumps(envelope).encode(),
        mt.DSSE_ENVELOPE,
        annotations,
    )
    check = check_test_evidence(place.target, release.digest, [public])
    assert not check.ok and "signature does not verify" in check.detail and "\n" not in check.detail, check


def test_annotations_that_contradict_the_signed_statement_are_refused(place: Place, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "ci")
    release = make_release(place.target, "1.0.0", "1.0.0")
    attach_report(place.target, _report(release), private)  # a local run
    (desc,) = place.target.referrers(release.digest, evidence.REPORT_TYPE)
    # the same signed envelope re-attached with its listing claiming a docker run
    relabelled = {
        **desc.annotations,
        evidence.ANN_RUNTIME: "docker",
        evidence.ANN_CREATED: "2026-12-02T00:00:00Z",
    }
    subject = Descriptor(release.media_type, release.digest, len(release.raw))
    evidence.attach(
        place.target,
        subject,
        evidence.REPORT_TYPE,
        _payload(place.target, desc)[1],
        mt.DSSE_ENVELOPE,
        relabelled,
    )
    check = check_test_evidence(place.target, release.digest, [public], runtime="docker")
    assert not check.ok and "its statement says local" in check.detail, check


def test_a_report_over_another_digest_is_refused(place: Place, tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "ci")
    release = make_release(place.target, "1.0.0", "1.0.0")
    other = make_release(place.target, "1.1.0", "1.1.0")
    # validly signed, but its statement is about 1.1.0 while hung on 1.0.0
    subject = Descriptor(release.media_type, release.digest, len(release.raw))
    attach_envelope(
        place.target,
        subject,
        evidence.REPORT_TYPE,
        statement(_report(other)),
        private,
        _report(other).annotations(),
    )
    check = check_test_evidence(place.target, release.digest, [public])
    assert not check.ok and f"is over {other.digest}, not {release.digest}" in check.detail, check


def test_reports_written_before_signed_evidence_still_pass_promote(place: Place, tmp_path: Path) -> None:
    release = make_release(place.target, "1.0.0", "1.0.0")
    attach_old_report(place.target, release)  # plain JSON, application/json: what older versions wrote
    assert evidence.passing_report(place.target, release.digest) is not None
    assert check_test_evidence(place.target, release.digest, []).ok
    signed_only = check_test_evidence(place.target, release.digest, [_keys(tmp_path, "ci")[1]])
    assert not signed_only.ok and "unsigned" in signed_only.detail
    promote(place, "1.0.0", "prod", runtime=runtime())


class _RefuseReferrers(httpx.BaseTransport):
    """Forwards to the real registry but answers 500 to manifest PUTs by digest (what a referrer write is):
    a fault a real registry does not produce on demand."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and "/manifests/sha256:" in request.url.path:
            return httpx.Response(
                500, json={"errors": [{"code": "DENIED", "message": "referrers are read-only"}]}
            )
        return self.real.handle_request(request)


def test_a_registry_that_refuses_the_referrer_is_one_line_exit_1(
    registry: RegistryProcess, repo: str, tmp_path: Path
) -> None:
    private, _ = _keys(tmp_path, "ci")
    with client_for(registry.host) as healthy:
        release = make_release(RegistryRepository(healthy, repo), "1.0.0", "1.0.0")
    client = client_for(
        registry.host,
        transport=_RefuseReferrers(),
        sleep=lambda _s: None,
        retry=RetryPolicy(attempts=1, base_delay=0),
    )
    with client, pytest.raises(RegistryError) as refused:
        attach_report(RegistryRepository(client, repo), _report(release), private)
    assert refused.value.exit_code == 1 and "\n" not in str(refused.value)
    assert "500" in str(refused.value) or "read-only" in str(refused.value), str(refused.value)


def test_a_report_edited_on_disk_is_a_verdict_not_a_crash(tmp_path: Path) -> None:
    private, public = _keys(tmp_path, "ci")
    layout = LayoutStore(tmp_path / "layout")
    release = make_release(layout, "1.0.0", "1.0.0")
    desc = attach_report(layout, _report(release), private)
    manifest = json.loads(layout.read_blob_bytes(desc.digest))
    envelope = layout.blob_path(manifest["layers"][0]["digest"])
    envelope.chmod(0o644)
    envelope.write_bytes(envelope.read_bytes().replace(b'"payload"', b'"payload" ', 1))
    check = check_test_evidence(layout, release.digest, [public])
    assert not check.ok and "cannot be read" in check.detail and check.evidence == desc.digest, check


@pytest.mark.engine
def test_test_key_on_a_registry_that_refuses_the_report_is_one_line_exit_1(
    built: tuple[api.BuildResult, Path],
    image_store: LayoutStore,
    registry: RegistryProcess,
    keys: tuple[PrivateKey, PublicKey, Path],
    tmp_path: Path,
) -> None:
    result, _ = built
    with Targets(store_path=image_store.root, environ={}) as targets:
        api.push(targets, f"{registry.host}/attest/refused:3.1.4", source=result.tag)

    def referrer_put(method: str, path: str) -> bool:
        return method == "PUT" and "/manifests/sha256:" in path  # a referrer is written by digest

    with refusing_proxy(registry.host, referrer_put) as proxy:
        cli = run_main(
            "test", f"{proxy}/attest/refused:3.1.4", "--runtime", "local", "--requests", "3",
            "--key", str(keys[2]), "--store", str(tmp_path / "store"),
        )  # fmt: skip
    assert cli.returncode == 1, cli.stderr
    assert "Traceback" not in cli.stderr
    errors = [x for x in cli.stderr.splitlines() if "refused the signed test report" in x]
    assert len(errors) == 1 and "passed but left no evidence" in errors[0], cli.stderr


@pytest.mark.engine
def test_build_json_lists_the_attestations_and_a_rebuild_outside_ci_is_a_local_builder(
    built: tuple[api.BuildResult, Path],
    image_store: LayoutStore,
    docker_engine: Any,
    keys: tuple[PrivateKey, PublicKey, Path],
) -> None:
    _, proj = built
    cli = run_main(
        "build", str(proj), "--version", "3.1.5", "--base", docker_engine.base_ref,
        "--store", str(image_store.root), "--key", "env://SIGNING_KEY", "--json",
        env={"SIGNING_KEY": keys[2].read_text(), "SOURCE_DATE_EPOCH": "1700000000", "GITHUB_ACTIONS": ""},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    body = json.loads(cli.stdout)  # and valid against the CLI's --json schema (run_main checks it)
    types = sorted(a["artifactType"] for a in body["attestations"])
    assert types == sorted([mt.PROVENANCE_ARTIFACT, mt.SBOM_ARTIFACT])
    (prov,) = [a for a in body["attestations"] if a["artifactType"] == mt.PROVENANCE_ARTIFACT]
    doc = _statement_of(image_store, Descriptor(mt.OCI_MANIFEST, prov["digest"], 0))
    run = doc["predicate"]["runDetails"]
    assert (
        run["builder"]["id"] == "https://modelpack.dev/builder/local"
        and "invocationId" not in run["metadata"]
    )
    assert doc["predicate"]["buildDefinition"]["externalParameters"]["version"] == "3.1.5"
    no_image = run_main(
        "build", str(proj), "--no-image", "--key", "env://SIGNING_KEY", "--store", str(image_store.root)
    )
    assert no_image.returncode == 2 and "needs --image" in no_image.stderr.strip().splitlines()[-1]
