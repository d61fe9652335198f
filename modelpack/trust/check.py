"""One checked piece of evidence: what `verify` prints as a line of the chain, what a promotion policy
requires, and what the promotion event records as checked.

Every checker (release signature, model signature, test evidence, provenance, SBOM) returns these, so
`verify`, `promote` and the portal read one shape. `ok` is the verdict; `detail` is the one line a person
reads ("signed by 3f2a… (release.pub)", "no SLSA provenance attached"), naming the failure when not ok.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    kind: str  # "signature" | "model-signature" | "test" | "provenance" | "sbom"
    ok: bool
    detail: str
    signer: str | None = None  # keyid of the key that verified it, when signed
    evidence: str | None = None  # digest of the referrer that was checked, when one was found

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.ok,
            "detail": self.detail,
            "signer": self.signer,
            "evidence": self.evidence,
        }
