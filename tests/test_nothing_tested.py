"""Tests that certify themselves (issue 21, item 4): a release declaring no golden case and no gate is not
PASSED by `modelpack test` (the CI key would otherwise sign that nothing as a pass), and a policy's `test:`
requirement names the minimums a release cannot lower by declaring less: cases=N, gate=METRIC and the
digest of the cases file the run read. Real builds, the real local runtime on the image's packages."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from support.clirun import run_cli

from modelpack import api
from modelpack.evidence import evidence
from modelpack.evidence.evidence import ANN_PASSED, REPORT_TYPE
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

pytestmark = [pytest.mark.slow, pytest.mark.engine]


def _project(tmp_path: Path, name: str, *, cases: int | None, gates: bool) -> Path:
    """iris-onnx renamed, with its first `cases` golden cases (None: no cases file) and its gates or none."""
    proj = tmp_path / f"{name}-{cases}-{gates}"
    shutil.copytree(EXAMPLES / "iris-onnx", proj)
    doc = yaml.safe_load((proj / "modelpack.yaml").read_text())
    doc["name"] = name
    tests = doc.pop("tests")
    if cases is not None:
        kept = json.loads((proj / "cases.json").read_text())
        if cases < len(kept["cases"]):  # else the team's file, byte for byte
            kept["cases"] = kept["cases"][:cases]
            (proj / "cases.json").write_text(json.dumps(kept))
        doc["tests"] = {"cases": "cases.json"}
    if gates:
        doc.setdefault("tests", {})["gates"] = tests["gates"]
    (proj / "modelpack.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return proj


def _test(store: LayoutStore, tag: str, key: Path) -> tuple[int, str]:
    out = run_cli(
        "test", tag, "--store", str(store.root), "--runtime", "local", "--requests", "5", "--key", str(key)
    )
    return out.returncode, out.stderr


def test_a_release_with_nothing_to_test_is_not_passed(
    image_store: LayoutStore, docker_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    key = api.keygen(tmp_path / "ci")
    built = api.build(
        Targets(store_path=image_store.root),
        _project(tmp_path, "iris-untested", cases=None, gates=False),
        image=True,
        base=docker_engine.base_ref,
        environ=EPOCH,
    )
    code, err = _test(image_store, built.tag, key.private_key)
    assert code == 1, err
    assert "nothing tested" in err.splitlines()[-1]
    (listed,) = image_store.referrers(built.digest, REPORT_TYPE)
    assert listed.annotations[ANN_PASSED] == "false"
    _, payload = evidence.read_layer(image_store, listed)
    predicate = json.loads(base64.b64decode(json.loads(payload)["payload"]))["predicate"]
    assert predicate["result"] == "FAILED" and predicate["failedTests"] == ["nothing tested"]
    assert predicate["passedTests"] == []
    promoted = run_cli("promote", built.tag, "prod", "--store", str(image_store.root))
    assert promoted.returncode != 0 and "no passing test report" in promoted.stderr


def test_a_policy_holds_a_release_to_minimums_it_cannot_lower(
    image_store: LayoutStore, docker_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    key = api.keygen(tmp_path / "ci")
    team_cases = "sha256:" + hashlib.sha256((EXAMPLES / "iris-onnx" / "cases.json").read_bytes()).hexdigest()
    store = str(image_store.root)
    honest = api.build(
        Targets(store_path=image_store.root), _project(tmp_path, "iris-minimums", cases=6, gates=True),
        image=True, base=docker_engine.base_ref, environ=EPOCH, version="1.0.0",
    )  # fmt: skip
    # the attacker's release: one easy case of its own and no gates; its test run passes, signed by CI
    lax = api.build(
        Targets(store_path=image_store.root), _project(tmp_path, "iris-minimums", cases=1, gates=False),
        image=True, base=docker_engine.base_ref, environ=EPOCH, version="1.0.1",
    )  # fmt: skip
    for built in (honest, lax):
        code, err = _test(image_store, built.tag, key.private_key)
        assert code == 0, err
    policy = f"test:local:cases=6:gate=accuracy:gate=f1_macro:cases-digest={team_cases}:{key.public_key}"
    set_ = run_cli("policy", "set", "iris-minimums", "prod", "--require", policy, "--store", store)
    assert set_.returncode == 0, set_.stderr
    shown = json.loads(run_cli("policy", "show", "iris-minimums", "prod", "--store", store, "--json").stdout)
    (req,) = shown["requirements"]
    assert (req["minCases"], req["gates"], req["casesDigest"]) == (6, ["accuracy", "f1_macro"], team_cases)
    refused = run_cli("promote", lax.tag, "prod", "--store", store)
    assert refused.returncode == 1, refused.stderr
    for why in (
        "1 golden case(s) passed, at least 6",
        "no passing gate on accuracy",
        "no passing gate on f1_macro",
    ):
        assert why in refused.stderr, refused.stderr
    assert "the cases file run was sha256:" in refused.stderr and f"not {team_cases}" in refused.stderr
    promoted = run_cli("promote", honest.tag, "prod", "--store", store)
    assert promoted.returncode == 0, promoted.stderr
    for bad, message in (
        ("cases=0", "not a test minimum"),
        ("gate=", "not a test minimum"),
        ("cases-digest=abc", "not a test minimum"),
    ):
        out = run_cli("policy", "set", "iris-minimums", "prod", "--require", f"test:{bad}", "--store", store)
        assert out.returncode == 2 and message in out.stderr, out.stderr
