"""The OCI vocabulary: media types, digests, canonical JSON, descriptors/manifests/indexes, deterministic
tars (write and safe extraction), a file's stat identity, the `Target` protocol and the copy engine."""
