"""The framework versions a model was made with, checked against the lock the release installs.

A scikit-learn estimator pickled by 1.9.1 and served by 1.8.0 loads with an InconsistentVersionWarning in a
container log nobody reads, and may predict differently. The version is read from the pickle's opcodes
(the `_sklearn_version` entry of each estimator's state), never by unpickling; a build from a run also
compares the packages the run recorded. A mismatch is an error naming both versions, unless allowed
(`--allow-version-mismatch`), and every check, allowed or matching, goes into the record.

An ONNX model's opsets (ai.onnx, and ai.onnx.ml when it imports it) are checked against the highest the
locked onnxruntime runs (bundle/opsets.py, from onnxruntime's compatibility table): a model needing a newer
opset is an error naming both, allowed and recorded the same way; an onnxruntime newer than the table is
recorded as unchecked. Like any framework, an onnxruntime the lock does not pin is not compared.

Not checked: torch's files carry no torch version (the run's recorded one is compared instead).
"""

from __future__ import annotations

import pickletools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from modelpack.bundle import opsets
from modelpack.bundle.lockfile import Lock
from modelpack.errors import InputError
from modelpack.record.frameworks import VersionCheck

# Packages whose version shapes what a saved model means; numpy and the like are left to the lock.
FRAMEWORKS = (
    "scikit-learn", "torch", "tensorflow", "keras", "xgboost", "lightgbm", "catboost", "onnxruntime",
    "transformers",
)  # fmt: skip
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
MAX_PICKLE_BYTES = 1 << 30  # a larger pickle is left unread here (the pickle scanner still walks it)


def pickled_sklearn_versions(path: Path) -> set[str]:
    """The `_sklearn_version` values a pickle's estimators carry: a string opcode right after the key."""
    if path.stat().st_size > MAX_PICKLE_BYTES:
        return set()
    found: set[str] = set()
    previous: object = None
    try:
        with path.open("rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                    continue  # the memo write between the key and its value
                if isinstance(arg, str) and previous == "_sklearn_version":
                    found.add(arg)
                previous = arg if isinstance(arg, str) else None
                if op.name == "STOP":
                    break
    except (ValueError, EOFError, OSError):
        pass  # not a plain pickle (a joblib archive's raw buffers): what was seen before it counts
    return found


def locked_versions(lock: Lock, package: str) -> set[str]:
    return {p.version for p in lock.packages if p.name == package}


def check_versions(
    lock: Lock, found: Iterable[tuple[str, str, str]], *, allow: bool, where: str
) -> tuple[VersionCheck, ...]:
    """`found`: (package, version, source). A package the lock does not install is not compared (nothing
    would load the model with another version of it)."""
    checks: list[VersionCheck] = []
    for package, version, source in found:
        locked = locked_versions(lock, package)
        if not locked:
            continue
        if version in locked:
            checks.append(VersionCheck(package, version, source, version))
            continue
        shown = " or ".join(sorted(locked))
        if not allow:
            raise InputError(
                f"{where}: {source} was made with {package} {version}, "
                f"but the lock installs {package} {shown}",
                hint=f"lock {package}=={version}, retrain with {shown}, "
                "or build with --allow-version-mismatch (recorded in the release)",
            )
        checks.append(VersionCheck(package, version, source, sorted(locked)[0], allowed=True))
    return tuple(checks)


def model_versions(models: Sequence[tuple[str, Path]], fmt: str) -> list[tuple[str, str, str]]:
    """(package, version, source) read from the model files themselves."""
    out = []
    for arcname, path in models:
        if fmt == "sklearn-pickle" or path.suffix in PICKLE_SUFFIXES:
            out += [
                ("scikit-learn", v, f"{arcname} (pickled)") for v in sorted(pickled_sklearn_versions(path))
            ]
    return out


def recorded_versions(packages: Mapping[str, str], source: str) -> list[tuple[str, str, str]]:
    """(package, version, source) of the frameworks a run recorded in its environment."""
    return [(p, packages[p], source) for p in FRAMEWORKS if p in packages]


def check_opsets(
    lock: Lock, models: Sequence[tuple[str, Path]], *, allow: bool, where: str
) -> tuple[VersionCheck, ...]:
    """The opsets of each `.onnx` model file against every onnxruntime the lock installs."""
    runtimes = sorted(locked_versions(lock, "onnxruntime"))
    onnx_files = [(a, p) for a, p in models if p.suffix == ".onnx"]
    if not runtimes or not onnx_files:
        return ()
    checks: list[VersionCheck] = []
    for arcname, path in onnx_files:
        source = f"{arcname} (opset)"
        for domain, opset in sorted(opsets.model_opsets(path).items()):
            for ort in runtimes:
                highest = opsets.runtime_max_opset(ort, domain)
                check = VersionCheck(domain, str(opset), source, None if highest is None else str(highest),
                                     runtime=f"onnxruntime {ort}")  # fmt: skip
                if highest is not None and opset > highest:
                    if not allow:
                        first = opsets.first_runtime_for(opset, domain)
                        newer = f"onnxruntime>={first}" if first else "a newer onnxruntime"
                        raise InputError(
                            f"{where}: {arcname} needs {domain} opset {opset}, but the lock installs "
                            f"onnxruntime {ort}, which runs {domain} up to opset {highest}",
                            hint=f"lock {newer}, export the model at opset {highest}, "
                            "or build with --allow-version-mismatch (recorded in the release)",
                        )
                    check = replace(check, allowed=True)
                checks.append(check)
    return tuple(checks)
