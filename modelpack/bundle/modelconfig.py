"""The CNCF ModelPack model config (application/vnd.cncf.model.config.v1+json).

The model-spec schema is closed (additionalProperties: false), so only its own fields go here; modelpack's
lineage lives in the record instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Packfile formats -> the model-spec's free-text `config.format` values used by modctl and KitOps.
FORMATS = {
    "onnx": "onnx",
    "safetensors": "safetensors",
    "pytorch": "pytorch",
    "gguf": "gguf",
    "sklearn-pickle": "pickle",
    "other": "other",
}


def model_config(
    *,
    name: str,
    version: str,
    created: str,
    diff_ids: Sequence[str],
    fmt: str | None = None,
    architecture: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = (),
    license: str | None = None,
    revision: str | None = None,
    source_url: str | None = None,
    datasets_urls: Sequence[str] = (),
) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"name": name, "version": version, "createdAt": created}
    if description:
        descriptor["description"] = description
    if authors:
        descriptor["authors"] = list(authors)
    if license:
        descriptor["licenses"] = [license]
    if revision:
        descriptor["revision"] = revision
    if source_url:
        descriptor["sourceURL"] = source_url
    if datasets_urls:
        descriptor["datasetsURL"] = list(datasets_urls)
    config: dict[str, Any] = {}
    if fmt:
        config["format"] = FORMATS.get(fmt, fmt)
    if architecture:
        config["architecture"] = architecture
    return {
        "descriptor": descriptor,
        "config": config,
        "modelfs": {"type": "layers", "diffIds": list(diff_ids)},
    }
