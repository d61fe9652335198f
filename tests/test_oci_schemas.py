"""What modelpack.oci.model builds validates against the vendored schemas; broken documents fail."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import support.schemacheck as schemacheck

from modelpack.errors import ContentError
from modelpack.oci import canonical, digest, mediatypes
from modelpack.oci.model import Descriptor, Index, Manifest, Platform, parse

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


def _config() -> Descriptor:
    return Descriptor.of(mediatypes.MODEL_CONFIG, b'{"x":1}')


def _manifest() -> Manifest:
    subject = Descriptor(mediatypes.OCI_INDEX, D1, 100)
    return Manifest(
        config=_config(),
        layers=(
            Descriptor(
                mediatypes.MODEL_WEIGHT_TAR,
                D2,
                1 << 30,
                annotations={mediatypes.ANN_FILEPATH: "models/w.bin"},
            ),
            Descriptor.of(mediatypes.RECORD, b"{}", data=b"{}"),
        ),
        artifact_type=mediatypes.MODEL_ARTIFACT,
        subject=subject,
        annotations={mediatypes.ANN_VERSION: "1.0.0"},
    )


def _index() -> Index:
    image = Descriptor(mediatypes.OCI_MANIFEST, D1, 10, platform=Platform("amd64", "linux"))
    bundle = _manifest().descriptor(
        platform=Platform("unknown", "unknown"),
        artifact_type=mediatypes.MODEL_ARTIFACT,
        annotations={mediatypes.ANN_TITLE: "bundle"},
    )
    return Index(
        manifests=(image, bundle),
        annotations={mediatypes.ANN_REVISION: "abc"},
        subject=Descriptor(mediatypes.OCI_INDEX, D2, 5),
    )


def test_vendored_schemas_are_self_contained() -> None:
    # Nothing at test time may reach into the shared spec folder or the network.
    for path in schemacheck.SCHEMAS.rglob("*"):
        if path.is_file():
            assert "/work/shared" not in path.read_text("utf-8")
    for folder in ("oci-image-spec", "cncf-model-spec"):
        assert (schemacheck.SCHEMAS / folder / "LICENSE").read_text().count("Apache License") >= 1
        assert "Apache-2.0" in (schemacheck.SCHEMAS / folder / "SOURCE.md").read_text()


def test_manifest_with_every_field_validates() -> None:
    m = _manifest()
    obj = json.loads(m.to_bytes())
    assert (
        obj["artifactType"] == mediatypes.MODEL_ARTIFACT and "subject" in obj and "data" in obj["layers"][1]
    )
    schemacheck.validate_manifest(m)
    schemacheck.validate_manifest(m.to_bytes())
    for layer in obj["layers"]:
        schemacheck.validate_descriptor(layer)


def test_a_bundle_with_a_training_history_layer_validates() -> None:
    history = Descriptor.of(mediatypes.METRICS_HISTORY, b'{"columns":[],"rows":[],"x":"step"}')
    m = _manifest()
    m = m.replace(layers=(m.layers[0], history, m.layers[1]))
    schemacheck.validate_manifest(m)
    schemacheck.validate_descriptor(history.to_json())
    assert mediatypes.LAYER_KINDS[mediatypes.METRICS_HISTORY].name == "history"
    assert mediatypes.METRICS_HISTORY not in mediatypes.SERVED_LAYERS  # never in the serving image


def test_index_with_platforms_validates() -> None:
    ix = _index()
    obj = json.loads(ix.to_bytes())
    assert obj["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    schemacheck.validate_index(ix)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda o: o.pop("config"),
        lambda o: o.update(layers=[]),
        lambda o: o["config"].update(digest="sha256 no colon"),
        lambda o: o["layers"][0].update(size="big"),
        lambda o: o["layers"][0].update(mediaType="not a media type"),
        lambda o: o.update(annotations={"k": 1}),
        lambda o: o.update(schemaVersion=1),
        lambda o: o["subject"].pop("digest"),
    ],
)
def test_broken_manifest_fails(breakage) -> None:  # type: ignore[no-untyped-def]
    obj = json.loads(_manifest().to_bytes())
    breakage(obj)
    with pytest.raises(jsonschema.ValidationError):
        schemacheck.validate_manifest(obj)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda o: o.pop("manifests"),
        lambda o: o["manifests"][0]["platform"].pop("os"),
        lambda o: o["manifests"][1].update(digest="Sha256:abc"),
        lambda o: o["manifests"][0].update(size="10"),
    ],
)
def test_broken_index_fails(breakage) -> None:  # type: ignore[no-untyped-def]
    obj = json.loads(_index().to_bytes())
    breakage(obj)
    with pytest.raises(jsonschema.ValidationError):
        schemacheck.validate_index(obj)


def test_image_config_and_model_config() -> None:
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": [D1]},
        "config": {"Env": ["PORT=8080"]},
    }
    schemacheck.validate_config(image_config)
    with pytest.raises(jsonschema.ValidationError):
        schemacheck.validate_config({"architecture": "amd64", "os": "linux"})

    model_config = {
        "descriptor": {"name": "iris", "version": "1.0.0", "createdAt": "2026-01-01T00:00:00Z"},
        "config": {"format": "onnx"},
        "modelfs": {"type": "layers", "diffIds": [D1]},
    }
    schemacheck.validate_model_config(model_config)
    for bad in (
        {**model_config, "modelpack": {}},  # the schema is closed
        {**model_config, "descriptor": {"name": "iris", "createdAt": "yesterday"}},
        {**model_config, "modelfs": {"type": "layers", "diffIds": []}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            schemacheck.validate_model_config(bad)


def test_layout_schema() -> None:
    schemacheck.validate_layout({"imageLayoutVersion": "1.0.0"})
    with pytest.raises(jsonschema.ValidationError):
        schemacheck.validate_layout({"imageLayoutVersion": "2"})


def test_parse_keeps_non_canonical_bytes_and_digest() -> None:
    m = _manifest()
    pretty = json.dumps(json.loads(m.to_bytes()), indent=3).encode() + b"\n"
    assert pretty != m.to_bytes()
    parsed = parse(pretty)
    assert isinstance(parsed, Manifest)
    assert parsed.to_bytes() == pretty
    assert parsed.digest == digest.of_bytes(pretty) != m.digest
    assert parsed.size == len(pretty)
    assert parsed == m  # same content, different bytes
    # A changed copy drops the raw bytes and serialises canonically.
    changed = parsed.replace(annotations={})
    assert changed.to_bytes() == canonical.dumps(changed.to_json())

    ix_bytes = b'{ "schemaVersion": 2, "manifests": [] ,"mediaType":"' + mediatypes.OCI_INDEX.encode() + b'"}'
    ix = parse(ix_bytes)
    assert isinstance(ix, Index) and ix.to_bytes() == ix_bytes and ix.digest == digest.of_bytes(ix_bytes)


def test_parse_refuses_garbage() -> None:
    for raw in (b"not json", b"[]", b'{"schemaVersion": 1, "layers": []}', b'{"mediaType": "x/y"}'):
        with pytest.raises(ContentError):
            parse(raw)


def test_schema_files_match_their_ids() -> None:
    ids = {json.loads(p.read_text()).get("id") for p in Path(schemacheck.OCI_DIR).glob("*.json")}
    assert "https://opencontainers.org/schema/image/manifest" in ids
    assert "https://opencontainers.org/schema/image/index" in ids
