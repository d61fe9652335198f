"""Custom resources checked against the vendored CRDs (tests/fixtures/crds, see its README), strictly: a
field the CRD does not declare is an error here, where an API server would silently prune it."""

from __future__ import annotations

import copy
import functools
import gzip
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "crds"
FILES = {
    ("gateway.networking.k8s.io", "HTTPRoute"): "gateway.networking.k8s.io_httproutes.yaml.gz",
    ("serving.kserve.io", "InferenceService"): "serving.kserve.io_inferenceservices.yaml.gz",
    ("argoproj.io", "Rollout"): "argoproj.io_rollouts.yaml.gz",
}


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    group, _, version = api_version.rpartition("/")
    # libyaml's loader: the KServe CRD is 2 MB of YAML, 15 s for the pure-Python one
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(gzip.decompress((CRDS / FILES[(group, kind)]).read_bytes()), Loader=loader)
    for v in crd["spec"]["versions"]:
        if v["name"] == version and v.get("served"):
            schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            return _strict(schema)  # type: ignore[no-any-return]
    raise AssertionError(f"{api_version} {kind} is not a served version of the vendored CRD")


def validate(doc: dict[str, Any]) -> None:
    """Raises jsonschema.ValidationError when `doc` does not fit its CRD's served version."""
    jsonschema.Draft7Validator(schema_for(doc["apiVersion"], doc["kind"])).validate(doc)
