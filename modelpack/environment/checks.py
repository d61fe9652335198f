"""The checks a promotion policy runs, one per requirement kind, each delegating to the module that owns
that evidence (evidence.py for test reports, signatures.py, attestations.py). promote and rollback take
them injected (`policy.Checkers`); this is the set they use unless told otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from modelpack.environment.history import short
from modelpack.environment.policy import Checkers, Requirement
from modelpack.evidence.evidence import passing_report, runtime_of
from modelpack.oci.target import Target
from modelpack.trust.check import Check


def default_checkers(today: Callable[[], dt.date] = dt.date.today) -> Checkers:
    return Checkers(
        {
            "test": check_test,
            "signature": check_signature,
            "model-signature": check_model_signature,
            "provenance": check_provenance,
            "sbom": check_sbom,
        },
        today,
    )


def check_test(target: Target, digest: str, req: Requirement) -> Check:
    if req.keys or req.minimums:  # minimums are read from the report the statement carries
        from modelpack.evidence import attestations

        return attestations.check_test_evidence(
            target,
            digest,
            req.public_keys(),
            runtime=req.runtime,
            shortfalls=req.shortfalls if req.minimums else None,
        )
    report = passing_report(target, digest, req.runtime)
    if report is None:
        what = f" from the {req.runtime} runtime" if req.runtime else ""
        return Check("test", False, f"no passing test report{what} is attached to {short(digest)}")
    return Check(
        "test",
        True,
        f"passing test report {short(report.digest)} ({runtime_of(report)} runtime)",
        evidence=report.digest,
    )


def check_signature(target: Target, digest: str, req: Requirement) -> Check:
    from modelpack.evidence import signatures

    return signatures.verify_release_signature(target, digest, req.public_keys())


def check_model_signature(target: Target, digest: str, req: Requirement) -> Check:
    from modelpack.evidence import signatures
    from modelpack.release.view import load_release

    bundle = load_release(target, digest, layers=False).bundle
    return signatures.verify_model_signature(target, bundle.digest, req.public_keys())


def check_provenance(target: Target, digest: str, req: Requirement) -> Check:
    from modelpack.evidence import attestations

    return attestations.check_provenance(target, digest, req.public_keys())


def check_sbom(target: Target, digest: str, req: Requirement) -> Check:
    from modelpack.evidence import attestations

    return attestations.check_sbom(target, digest)
