"""Releases: the image index holding the serving image and the bundle, and reading them back
(`view`: a release from its manifests; `diff`: two records compared; `query`: `ls --sort/--where`)."""
