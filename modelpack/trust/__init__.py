"""Trust: keys, signatures and the signed documents a release carries (DSSE envelopes, in-toto statements,
SLSA provenance, the CycloneDX SBOM, the OpenSSF model signature).

This layer builds and checks documents; it never talks to a registry. `release/` attaches what it makes
as referrers and reads them back; `api/` wires the two. Keys are ECDSA P-256 in PEM (what cosign,
model-signing and `@sigstore/verify` all take), and a key's id is the sha256 of its public PEM, the hint
model-signing writes into its bundles, so one id names a key everywhere modelpack shows one.
"""
