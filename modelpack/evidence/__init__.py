"""Evidence attached to a release as referrers: any artifact and the test report (`evidence`), the release
and model signatures (`signatures`), the attestations: in-toto test evidence, SLSA provenance, the SBOM
(`attestations`). Writing, finding and checking them; the documents themselves are pure, in `trust/`."""
