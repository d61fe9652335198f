"""Validate what modelpack writes against the vendored OCI image-spec and CNCF model-spec schemas, offline.

The OCI schemas are draft-04 and name each other by relative `$ref` ("defs-descriptor.json#/...") resolved
against their `id`s (https://opencontainers.org/schema/image/manifest, .../schema/descriptor), so the same
file is reached under more than one URI. The registry below maps every such URI to the vendored file; an
unknown URI raises instead of being fetched.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
OCI_DIR = SCHEMAS / "oci-image-spec"
MODEL_DIR = SCHEMAS / "cncf-model-spec"
OCI_BASES = ("https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/")

# RFC 3339 date-time; jsonschema checks "date-time" only when rfc3339-validator is installed, so we
# check it ourselves rather than let a bad `createdAt` pass silently.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


@cache
def registry() -> Registry:  # type: ignore[type-arg]
    resources: list[tuple[str, Resource[Any]]] = []
    for path in sorted(OCI_DIR.glob("*.json")):
        contents = _load(path)
        resource = DRAFT4.create_resource(contents)
        for base in OCI_BASES:
            resources.append((base + path.name, resource))
        if isinstance(contents.get("id"), str):
            resources.append((contents["id"], resource))
    model = _load(MODEL_DIR / "config-schema.json")
    resources.append((model["$id"], DRAFT202012.create_resource(model)))
    return Registry().with_resources(resources).crawl()


def _validator(path: Path) -> jsonschema.protocols.Validator:
    schema = _load(path)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry(), format_checker=FORMATS)


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    return {
        "manifest": _validator(OCI_DIR / "image-manifest-schema.json"),
        "index": _validator(OCI_DIR / "image-index-schema.json"),
        "config": _validator(OCI_DIR / "config-schema.json"),
        "layout": _validator(OCI_DIR / "image-layout-schema.json"),
        "descriptor": _validator(OCI_DIR / "content-descriptor.json"),
        "model_config": _validator(MODEL_DIR / "config-schema.json"),
    }


def _as_obj(obj: Any) -> Any:
    """Accept a parsed object, raw JSON bytes/str, or a modelpack type with `to_json()`."""
    if isinstance(obj, bytes | str):
        return json.loads(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    return obj


def validate(kind: str, obj: Any) -> None:
    """Raise jsonschema.ValidationError (the first, most relevant error) when `obj` is invalid."""
    validator = _validators()[kind]
    error = jsonschema.exceptions.best_match(validator.iter_errors(_as_obj(obj)))
    if error is not None:
        raise error


def validate_manifest(obj: Any) -> None:
    validate("manifest", obj)


def validate_index(obj: Any) -> None:
    validate("index", obj)


def validate_config(obj: Any) -> None:
    """An OCI image config (application/vnd.oci.image.config.v1+json)."""
    validate("config", obj)


def validate_layout(obj: Any) -> None:
    """The `oci-layout` file of an OCI image layout directory."""
    validate("layout", obj)


def validate_descriptor(obj: Any) -> None:
    validate("descriptor", obj)


def validate_model_config(obj: Any) -> None:
    """A CNCF ModelPack config (application/vnd.cncf.model.config.v1+json)."""
    validate("model_config", obj)


CLI_SCHEMA = SCHEMAS / "cli" / "cli-json.schema.json"


@cache
def _cli_registry() -> tuple[Registry, str]:
    doc = _load(CLI_SCHEMA)
    return Registry().with_resource(doc["$id"], Resource(doc, DRAFT202012)), doc["$id"]


def has_shape(command: str) -> bool:
    return command in _load(CLI_SCHEMA)["$defs"]["commands"]


def check_cli_json(command: str, value: Any) -> None:
    """`modelpack COMMAND --json` output against its documented shape (tests/schemas/cli)."""
    registry, base = _cli_registry()
    commands = _load(CLI_SCHEMA)["$defs"]["commands"]
    assert command in commands, f"`{command} --json` has no documented shape in {CLI_SCHEMA.name}"
    schema = {"$ref": f"{base}#/$defs/commands/{command}"}
    jsonschema.Draft202012Validator(schema, registry=registry, format_checker=FORMATS).validate(value)
