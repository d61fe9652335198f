"""Running what an environment names: the deployment spec, the state every target follows, the Docker
target (release containers behind one reverse proxy), canary analysis and the Kubernetes manifests."""
