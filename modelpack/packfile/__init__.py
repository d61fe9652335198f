"""modelpack.yaml: the Packfile schema (schema.py), its loader (loader.py), gates and version resolution."""

from modelpack.packfile.gates import parse_gate
from modelpack.packfile.loader import PACKFILE, find_packfile, load_packfile, parse_packfile
from modelpack.packfile.schema import (
    BUILDERS,
    MODEL_FORMATS,
    CodeSpec,
    DatasetSpec,
    DependenciesSpec,
    Gate,
    ModelSpec,
    Packfile,
    ServingSpec,
    TestsSpec,
)
from modelpack.packfile.version import resolve_version

__all__ = [
    "BUILDERS",
    "MODEL_FORMATS",
    "PACKFILE",
    "CodeSpec",
    "DatasetSpec",
    "DependenciesSpec",
    "Gate",
    "ModelSpec",
    "Packfile",
    "ServingSpec",
    "TestsSpec",
    "find_packfile",
    "load_packfile",
    "parse_gate",
    "parse_packfile",
    "resolve_version",
]
