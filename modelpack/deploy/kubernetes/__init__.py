"""The Kubernetes target: digest-pinned manifests a GitOps tool applies, never a controller of our own.

`model` is the frozen input (what an environment runs, how), `workload` the Deployment and Service,
`kustomize` the base + per-environment overlay (with the Gateway API HTTPRoute of a canary), `kserve` the
InferenceService alternative, `rollouts` the Argo Rollouts one, `gitops` the Flux and Argo CD objects,
`files` how a rendered tree lands on disk, `bundle` the same files as an OCI artifact that refers to the
release, `kubectl` the one command line `--apply` runs.
"""
