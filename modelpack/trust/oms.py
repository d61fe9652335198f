"""The OpenSSF Model Signing (OMS) signature of a bundle's files, as the `model_signing` package writes
and verifies it: a Sigstore bundle whose DSSE envelope holds an in-toto statement listing every file
(path, sha256) under the "files" serialization.

The file list is what `unpack` writes into DIR (every layer kind with an unpack group), hashed by
streaming the layer tars, never by writing them out. `model_signing`'s verifier rehashes the unpacked
directory and compares, skipping the paths the statement's `ignore_paths` names: the signature file
itself (DIR/model.sig) and git's files. A bundle may hold none of those (nor version-control metadata
anywhere: oci/untar.bundle_path): hashing refuses them, so a signature copied onto a bundle with an extra
`.git/config` fails here instead of passing with the file unchecked, and unpack refuses to write it.
"""

from __future__ import annotations

import hashlib
import pathlib
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from modelpack.errors import InputError
from modelpack.oci.tar import check_arcname
from modelpack.oci.tarread import FILE_TYPES, members
from modelpack.oci.untar import bundle_path
from modelpack.trust import cosign, sigstore_bundle
from modelpack.trust.check import Check
from modelpack.trust.keys import PrivateKey, PublicKey

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SIGNATURE_FILE = "model.sig"
# What model_signing's verifier skips: our signature file, and the git paths it always ignores.
IGNORED = (SIGNATURE_FILE, ".git", ".gitattributes", ".github", ".gitignore")
KIND = "model-signature"


def hash_layer(chunks: Iterable[bytes], into: dict[str, str]) -> None:
    """Adds path -> sha256 hex of each regular file in one layer tar (a later layer wins, as in unpack),
    read by the extractor's own parser (oci/tarread.members), so what is hashed is what unpack writes.
    A symlink is refused: model_signing refuses to hash one, so no signature could ever verify; so are
    the paths a bundle may not hold (module doc)."""
    for member, body in members(chunks):
        name = check_arcname(member.name.rstrip("/"))
        why = bundle_path(name)
        if why:  # unpack refuses it too; signed or not, it would go unchecked (module doc)
            raise InputError(f"the bundle holds {name}: {why}")
        if member.type == tarfile.DIRTYPE:
            continue
        if member.type == tarfile.SYMTYPE:
            raise InputError(f"{name} is a symlink: an OpenSSF model signature cannot cover one")
        if member.type == tarfile.LNKTYPE:
            linked = check_arcname(member.linkname.rstrip("/"))
            if linked not in into:
                raise InputError(f"{name} is a hardlink to {linked}, which is not a file before it")
            into[name] = into[linked]
            continue
        if member.type not in FILE_TYPES:
            raise InputError(f"{name} is a special file: not part of a model")
        h = hashlib.sha256()
        for piece in body:
            h.update(piece)
        into[name] = h.hexdigest()


def signed_files(files: Mapping[str, str]) -> dict[str, str]:
    """The files a signature covers: all but the ignored paths."""
    return {n: d for n, d in files.items() if not _ignored(n)}


def sign_files(key: PrivateKey, name: str, files: Mapping[str, str]) -> bytes:
    """The OMS bundle (model.sig) over `files` (path -> sha256 hex), made by model_signing's own key
    signer so the statement is byte for byte what its verifier expects."""
    from model_signing import manifest as oms_manifest
    from model_signing._hashing import hashing
    from model_signing._signing import signing

    serialization = oms_manifest._FileSerialization("sha256", False, [pathlib.Path(p) for p in IGNORED])
    items = [
        oms_manifest.FileManifestItem(
            path=pathlib.PurePosixPath(path), digest=hashing.Digest("sha256", bytes.fromhex(digest))
        )
        for path, digest in sorted(signed_files(files).items())
    ]
    payload = signing.Payload(oms_manifest.Manifest(name, items, serialization))
    signature = _signer(key.key).sign(payload)
    return str(signature.bundle.to_json()).encode()


def check_files(raw: bytes, files: Mapping[str, str], keys: Sequence[PublicKey]) -> Check:
    """Whether `raw` is an OMS signature by one of `keys` over exactly `files`."""
    opened = sigstore_bundle.open_statement(
        raw, keys, PREDICATE_TYPE, kind=KIND, what="model signature", named="an OpenSSF model signature"
    )
    if isinstance(opened, Check):
        return opened
    try:
        resources = {str(r["name"]): str(r["digest"]) for r in _resources(opened.statement)}
    except (KeyError, TypeError) as e:
        return Check(KIND, False, f"malformed model signature statement: {e}")
    expected = dict(files)  # all of them: a file the signature skips is one it does not cover
    if resources != expected:
        why = _difference(resources, expected)
        return Check(KIND, False, f"the model signature is not over the release's files: {why}")
    verdict = cosign.signer_verdict(KIND, opened, keys, "model")
    if verdict.ok:
        return Check(KIND, True, f"{verdict.detail}, {len(expected)} files", signer=verdict.signer)
    return verdict


def _resources(statement: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    predicate = statement.get("predicate")
    found = predicate.get("resources") if isinstance(predicate, Mapping) else None
    if not isinstance(found, list):
        raise KeyError("predicate.resources")
    for r in found:
        if not isinstance(r, Mapping) or r.get("algorithm") != "sha256":
            raise TypeError("a resource that is not a sha256 file digest")
    return found


def _difference(signed: Mapping[str, str], actual: Mapping[str, str]) -> str:
    changed = sorted(n for n in signed.keys() & actual.keys() if signed[n] != actual[n])
    if changed:
        return f"{changed[0]} differs" + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
    missing = sorted(actual.keys() - signed.keys())
    if missing:
        return f"{missing[0]} is not signed"
    return f"{sorted(signed.keys() - actual.keys())[0]} is signed but not in the release"


def _ignored(name: str) -> bool:
    path = pathlib.PurePosixPath(name)
    return any(path.is_relative_to(p) for p in IGNORED)


def _signer(key: ec.EllipticCurvePrivateKey) -> Any:
    """model_signing's key signer holding an already loaded key: its constructor reads a file, and the key
    may have come from an environment variable or stdin; an unencrypted copy on disk is never made."""
    from model_signing._signing import sign_ec_key

    class LoadedKeySigner(sign_ec_key.Signer):
        def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
            self._private_key = private_key

    return LoadedKeySigner(key)
