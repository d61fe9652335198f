"""The test report: its JSON, its JUnit XML, and its life as a referrer of the release index.

The report is attached as an in-toto test-result statement (a DSSE envelope, signed when a key is given)
with `subject` = the index digest and the annotations `release.evidence` defines, so `promote` decides from a
referrers listing alone, without fetching any report blob.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from modelpack import __version__
from modelpack.evidence import evidence
from modelpack.evidence.attestations import attach_envelope
from modelpack.oci.model import Descriptor
from modelpack.oci.target import Target
from modelpack.testing.cases import CaseResult
from modelpack.testing.gates import GateResult, Latency
from modelpack.trust.intoto import test_result_statement
from modelpack.trust.keys import PrivateKey

REPORT_VERSION = 1
NOTHING_TESTED = "nothing tested: the release declares no golden case and no gate"


@dataclass(frozen=True)
class ReleaseInfo:
    digest: str  # what the reference names: the index (or a bare bundle manifest)
    media_type: str
    size: int
    name: str
    version: str
    bundle_digest: str
    image_digest: str | None


@dataclass(frozen=True)
class TestReport:
    __test__ = False  # not a pytest class

    reference: str
    release: ReleaseInfo
    runtime: str  # "docker" or "local"
    runtime_note: str  # how the runtime was chosen, and what it ran
    started: str  # RFC 3339
    finished: str
    cases: tuple[CaseResult, ...]
    gates: tuple[GateResult, ...]
    latency: Latency | None
    image_size_mb: float | None
    cases_digest: str | None = None  # sha256 of the cases file the run read, for a policy to pin

    @property
    def tested(self) -> bool:
        """Whether anything was tested: a release declaring no case and no gate certifies nothing."""
        return bool(self.cases or self.gates)

    @property
    def passed(self) -> bool:
        return self.tested and all(c.passed for c in self.cases) and all(g.passed for g in self.gates)

    @property
    def failures(self) -> tuple[str, ...]:
        """Names of what failed: `case NAME`, `gate TEXT`, or that nothing was tested."""
        return tuple(
            ([] if self.tested else [NOTHING_TESTED])
            + [f"case {c.name}" for c in self.cases if not c.passed]
            + [f"gate {g.gate}" for g in self.gates if not g.passed]
        )

    def to_json(self) -> dict[str, Any]:
        r = self.release
        return {
            "reportVersion": REPORT_VERSION,
            "modelpack": __version__,
            "reference": self.reference,
            "release": {
                "digest": r.digest,
                "mediaType": r.media_type,
                "name": r.name,
                "version": r.version,
                "bundle": r.bundle_digest,
                "image": r.image_digest,
            },
            "runtime": self.runtime,
            "runtimeNote": self.runtime_note,
            "started": self.started,
            "finished": self.finished,
            "cases": [c.to_json() for c in self.cases],
            "gates": [g.to_json() for g in self.gates],
            "latency": self.latency.to_json() if self.latency else None,
            "imageSizeMb": self.image_size_mb,
            "casesDigest": self.cases_digest,
            "passed": self.passed,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode() + b"\n"

    def annotations(self) -> dict[str, str]:
        measured: dict[str, float] = dict(self.latency.metrics() if self.latency else {})
        if self.image_size_mb is not None:
            measured["image_size_mb"] = self.image_size_mb
        return evidence.report_annotations(
            passed=self.passed,
            created=self.finished,
            runtime=self.runtime,
            version=self.release.version,
            measured=measured,
            failures=self.failures,
        )


def junit_xml(report: TestReport) -> bytes:
    """One testsuite: a testcase per golden case (classname `cases`) and per gate (classname `gates`)."""
    failures = len(report.failures)
    tests = len(report.cases) + len(report.gates)
    suite_name = f"modelpack test {report.release.name}:{report.release.version}"
    root = ET.Element("testsuites", name="modelpack", tests=str(tests), failures=str(failures), errors="0")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=suite_name,
        tests=str(tests),
        failures=str(failures),
        errors="0",
        skipped="0",
        timestamp=report.started,
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("reference", report.reference),
        ("digest", report.release.digest),
        ("runtime", report.runtime),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    for c in report.cases:
        tc = ET.SubElement(suite, "testcase", classname="cases", name=c.name)
        if not c.passed:
            fail = ET.SubElement(tc, "failure", message=c.problems[0] if c.problems else "failed")
            fail.text = "\n".join(c.problems)
    for g in report.gates:
        tc = ET.SubElement(suite, "testcase", classname="gates", name=g.gate)
        if not g.passed:
            ET.SubElement(tc, "failure", message=g.detail).text = g.detail
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


def statement(report: TestReport) -> dict[str, Any]:
    """The report as an in-toto test-result statement over the release digest."""
    r = report.release
    return test_result_statement(report.to_json(), r.digest, f"{r.name}:{r.version}")


def attach_report(target: Target, report: TestReport, key: PrivateKey | None = None) -> Descriptor:
    """Attaches the report as test evidence: its statement in a DSSE envelope, signed by `key` if given."""
    r = report.release
    subject = Descriptor(r.media_type, r.digest, r.size)
    annotations = report.annotations()
    return attach_envelope(target, subject, evidence.REPORT_TYPE, statement(report), key, annotations)
