"""Pure OCI: media types, digests, canonical JSON, descriptors/manifests/indexes, tars, the layout store."""
