"""The ONNX opsets a model needs against those the locked onnxruntime runs.

A model stamped with an opset newer than its runtime implements fails to load in the container
("opset N is under development" or an unknown-op error) long after the build; the build can tell from the
model's `opset_import` and onnxruntime's published compatibility table. The model is parsed with the `onnx`
library (protobuf only: nothing in it runs) and external data is left on disk.
"""

from __future__ import annotations

from pathlib import Path

from packaging.version import InvalidVersion, Version

DEFAULT_DOMAIN = "ai.onnx"
ML_DOMAIN = "ai.onnx.ml"

# onnxruntime minor release -> (highest ai.onnx opset, highest ai.onnx.ml opset) it implements, from
# "ONNX Runtime compatibility", section "ONNX opset support":
#   https://onnxruntime.ai/docs/reference/compatibility.html
#   (source: github.com/microsoft/onnxruntime, branch gh-pages, docs/reference/compatibility.md)
# Every release also runs all lower opsets down to 7. A release newer than the last row is not guessed:
# its check is recorded as unchecked. Add rows here as the table grows.
ORT_OPSETS: dict[tuple[int, int], tuple[int, int]] = {
    (1, 20): (21, 4), (1, 19): (21, 4), (1, 18): (21, 4), (1, 17): (20, 4), (1, 16): (19, 3),
    (1, 15): (19, 3), (1, 14): (18, 3), (1, 13): (17, 3), (1, 12): (17, 3), (1, 11): (16, 2),
    (1, 10): (15, 2), (1, 9): (15, 2), (1, 8): (14, 2), (1, 7): (13, 2), (1, 6): (13, 2), (1, 5): (12, 2),
    (1, 4): (12, 2), (1, 3): (12, 2), (1, 2): (11, 2), (1, 1): (11, 2), (1, 0): (11, 2), (0, 5): (10, 1),
    (0, 4): (10, 1), (0, 3): (9, 1), (0, 2): (8, 1), (0, 1): (8, 1),
}  # fmt: skip
_COLUMN = {DEFAULT_DOMAIN: 0, ML_DOMAIN: 1}


def model_opsets(path: Path) -> dict[str, int]:
    """The highest opset the model imports per checked domain (`""` is ai.onnx), read without running it.
    Empty when protobuf cannot parse the file: the format check owns refusing files that are not ONNX,
    and what cannot be read is not compared (as for pickles)."""
    import onnx  # deferred: a build without ONNX models never loads protobuf

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError (google.protobuf has no type stubs here)
        # Zero padding some tools append: onnxruntime's stream parser stops at the first 0 tag, the
        # Python parser refuses it, so parse what comes before the padding.
        data = path.read_bytes()
        if not data.endswith(b"\0"):
            return {}
        try:
            model = onnx.load_model_from_string(data.rstrip(b"\0"))
        except Exception:
            return {}
    found: dict[str, int] = {}
    for imp in model.opset_import:
        domain = imp.domain or DEFAULT_DOMAIN
        if domain in _COLUMN:
            found[domain] = max(found.get(domain, 0), int(imp.version))
    return found


def runtime_max_opset(onnxruntime: str, domain: str) -> int | None:
    """The highest `domain` opset onnxruntime `onnxruntime` runs; None when the table does not know it."""
    try:
        release = Version(onnxruntime).release
    except InvalidVersion:
        return None
    row = ORT_OPSETS.get((release[0], release[1] if len(release) > 1 else 0))
    return None if row is None else row[_COLUMN[domain]]


def first_runtime_for(opset: int, domain: str) -> str | None:
    """The oldest onnxruntime release (major.minor) the table says runs `opset`, for the hint."""
    fits = sorted(k for k, row in ORT_OPSETS.items() if row[_COLUMN[domain]] >= opset)
    return f"{fits[0][0]}.{fits[0][1]}" if fits else None
