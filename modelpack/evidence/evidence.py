"""Release evidence: small artifacts attached to a release as OCI referrers, and the rules that read them.

An artifact is a manifest whose `subject` is the release index and whose one layer is the payload; the
registry's referrers API lists it, and on registries without that API (distribution 2.8) the repository's
own manifest write keeps the `sha256-<hex>` fallback tag index up to date. Annotations carry the payload's
summary so a listing answers most questions without fetching a blob.

The test report is the evidence promote needs: the runner writes it through `release.attestations` (an
in-toto statement in a DSSE envelope, with these annotations), promote reads it through `passing_report`
from the listing alone, so the annotation keys and the rule live here once and hold for reports of every
version. Attestations (signed test evidence, provenance, the SBOM) are in `attestations.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Descriptor, Manifest, parse
from modelpack.oci.target import RawManifest, Target

EMPTY_CONFIG = Descriptor.of(mt.OCI_EMPTY, mt.EMPTY_JSON)

REPORT_TYPE = mt.TEST_REPORT_ARTIFACT
REPORT_MEDIA_TYPE = "application/json"  # the payload of reports written before signed evidence
ANN_PASSED = "dev.modelpack.test.passed"
ANN_CREATED = "dev.modelpack.test.created"
ANN_RUNTIME = "dev.modelpack.test.runtime"
ANN_METRIC = "dev.modelpack.test.metric."  # + a test-run metric name: what the run measured
ANN_FAILED = "dev.modelpack.test.failed"  # what failed (`case NAME; gate TEXT`), cut to MAX_FAILED_TEXT
MAX_FAILED_TEXT = 400


def attach(
    target: Target,
    subject: Descriptor,
    artifact_type: str,
    payload: bytes,
    payload_media_type: str,
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """Writes payload and manifest (blobs first); the target indexes the referrer. Returns its descriptor."""
    payload_desc = Descriptor.of(payload_media_type, payload)
    target.write_blob(EMPTY_CONFIG, [mt.EMPTY_JSON])
    target.write_blob(payload_desc, [payload])
    manifest = Manifest(
        config=EMPTY_CONFIG,
        layers=(payload_desc,),
        artifact_type=artifact_type,
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        annotations=dict(annotations or {}),
    )
    raw = manifest.to_bytes()
    target.put_manifest(manifest.digest, RawManifest(raw, manifest.media_type, manifest.digest))
    return manifest.descriptor(artifact_type=artifact_type, annotations=dict(annotations or {}))


def read_payload(target: Target, referrer: Descriptor, max_size: int = 4 * 1024 * 1024) -> bytes:
    """The payload of an attached artifact (its single layer), verified."""
    return read_layer(target, referrer, max_size)[1]


def read_layer(target: Target, referrer: Descriptor, max_size: int = 4 * 1024 * 1024) -> tuple[str, bytes]:
    """(media type, bytes) of an attached artifact's single layer, verified: a test report written as a
    DSSE envelope and one written as plain JSON (before signed evidence) are told apart by it."""
    raw = target.get_manifest(referrer.digest)
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Manifest) or len(doc.layers) != 1 or doc.layers[0].size > max_size:
        raise InputError(f"referrer {referrer.digest} is not a single-payload artifact")
    with target.read_blob(doc.layers[0]) as chunks:
        return doc.layers[0].media_type, b"".join(chunks)


def report_annotations(
    *,
    passed: bool,
    created: str,
    runtime: str,
    version: str,
    measured: Mapping[str, float] | None = None,
    failures: Sequence[str] = (),
) -> dict[str, str]:
    """What a test report's referrer descriptor says of it: enough for `passing_report` to decide, for
    `ls --sort latency_p95_ms` to sort, and for promote to say what failed, without fetching a blob."""
    failed = f"{len(failures)}: " + "; ".join(failures) if failures else ""
    return {
        ANN_PASSED: "true" if passed else "false",
        ANN_CREATED: created,
        ANN_RUNTIME: runtime,
        mt.ANN_VERSION: version,
        **{f"{ANN_METRIC}{k}": f"{v:g}" for k, v in (measured or {}).items()},
        **({ANN_FAILED: failed[:MAX_FAILED_TEXT]} if failed else {}),
    }


def failed_summary(report: Descriptor) -> str:
    """`FAILED (2 checks: case a; gate f1 >= 0.9)` for a failed report, as its annotations say."""
    failed = _annotations(report).get(ANN_FAILED, "")
    count, _, names = failed.partition(": ")
    if not count.isdigit():
        return "FAILED"
    return f"FAILED ({count} {'check' if count == '1' else 'checks'}: {names})"


def newest_report(target: Target, digest: str) -> Descriptor | None:
    """The newest report attached to `digest`, passed or not."""
    found = [d for d in target.referrers(digest, REPORT_TYPE) if d.artifact_type == REPORT_TYPE]
    return max(found, key=lambda d: (_annotations(d).get(ANN_CREATED, ""), d.digest)) if found else None


def measured(report: Descriptor) -> dict[str, float]:
    """The test-run metrics a report's annotations carry."""
    out = {}
    for key, value in _annotations(report).items():
        if key.startswith(ANN_METRIC):
            try:
                out[key[len(ANN_METRIC) :]] = float(value)
            except ValueError:
                continue  # a foreign or damaged annotation: not a number we can sort by
    return out


def passing_report(target: Target, index_digest: str, runtime: str | None = None) -> Descriptor | None:
    """The newest report attached to exactly `index_digest` whose passed annotation is true (and, with
    `runtime`, that the runtime "docker" or "local" produced), else None."""
    found = [
        d
        for d in target.referrers(index_digest, REPORT_TYPE)
        if d.artifact_type == REPORT_TYPE
        and _annotations(d).get(ANN_PASSED) == "true"
        and (runtime is None or runtime_of(d) == runtime)
    ]
    if not found:
        return None
    # RFC 3339 UTC timestamps of one format sort as strings; the digest breaks ties deterministically
    return max(found, key=lambda d: (_annotations(d).get(ANN_CREATED, ""), d.digest))


def runtime_of(report: Descriptor) -> str:
    """Which runtime produced an attached report: "docker", "local", or "unknown" for an old report."""
    return _annotations(report).get(ANN_RUNTIME) or "unknown"


def _annotations(d: Descriptor) -> Mapping[str, str]:
    return d.annotations or {}
