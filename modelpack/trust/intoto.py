"""in-toto Statement v1 (https://in-toto.io/Statement/v1) and the test-result predicate
(https://in-toto.io/attestation/test-result/v0.1): what `modelpack test` attaches as its evidence.

The statement's subject is the release index digest, so a report can never be read as evidence for another
release. The predicate keeps the spec's fields (`result`, `passedTests`, `failedTests`, `configuration`)
and adds `modelpack`: the whole report (each case and gate, the runtime, latency), which in-toto lets a
predicate carry (consumers ignore fields they do not know).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import digest as digests

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT_PREDICATE = "https://in-toto.io/attestation/test-result/v0.1"


def subject(name: str, digest: str) -> dict[str, Any]:
    """A ResourceDescriptor for an OCI digest `sha256:<hex>`."""
    algo, _, hex_ = digest.partition(":")
    return {"name": name, "digest": {algo: hex_}}


def statement(
    subjects: Sequence[Mapping[str, Any]], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [dict(s) for s in subjects],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def test_result_statement(report: Mapping[str, Any], index_digest: str, name: str) -> dict[str, Any]:
    """The statement of a test report (`TestReport.to_json()`), over `index_digest`."""
    cases = report.get("cases") or []
    gates = report.get("gates") or []
    tests = [(f"case {c['name']}", bool(c["passed"])) for c in cases] + [
        (f"gate {g['gate']}", bool(g["passed"])) for g in gates
    ]
    if not tests:  # nothing tested is not a pass: the statement says so by name
        tests = [("nothing tested", False)]
    release = report.get("release") or {}
    dataset = (report.get("evaluation") or {}).get("dataset") or {}  # report version 2 on
    configuration = [
        subject(f"{name} bundle", release["bundle"]) if release.get("bundle") else None,
        subject(f"{name} image", release["image"]) if release.get("image") else None,
        subject(f"evaluation dataset {dataset.get('name')} {dataset.get('version')}", dataset["digest"])
        if dataset.get("digest")
        else None,
    ]
    predicate = {
        "result": "PASSED" if report.get("passed") else "FAILED",
        "configuration": [c for c in configuration if c is not None],
        "passedTests": [t for t, ok in tests if ok],
        "warnedTests": [],
        "failedTests": [t for t, ok in tests if not ok],
        "modelpack": dict(report),
    }
    return statement([subject(name, index_digest)], TEST_RESULT_PREDICATE, predicate)


test_result_statement.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported


def parse_statement(doc: Mapping[str, Any], predicate_type: str) -> dict[str, Any]:
    """`doc` checked as an in-toto v1 statement of `predicate_type`; ContentError naming what is wrong."""
    if doc.get("_type") != STATEMENT_TYPE:
        raise ContentError(f"not an in-toto v1 statement (_type {doc.get('_type')!r})")
    if doc.get("predicateType") != predicate_type:
        raise ContentError(f"predicateType is {doc.get('predicateType')!r}, expected {predicate_type}")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not subjects or not all(_is_subject(s) for s in subjects):
        raise ContentError("in-toto statement has no valid subject")
    if not isinstance(doc.get("predicate"), Mapping):
        raise ContentError("in-toto statement has no predicate object")
    return dict(doc)


def subject_digests(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The OCI digests (`sha256:<hex>`) a statement's subjects name."""
    out = []
    for s in doc.get("subject") or ():
        for algo, hex_ in (s.get("digest") or {}).items():
            text = f"{algo}:{hex_}"
            if digests.is_digest(text):
                out.append(text)
    return tuple(out)


def _is_subject(s: Any) -> bool:
    return (
        isinstance(s, Mapping)
        and isinstance(s.get("digest"), Mapping)
        and bool(s["digest"])
        and all(isinstance(k, str) and isinstance(v, str) for k, v in s["digest"].items())
    )
