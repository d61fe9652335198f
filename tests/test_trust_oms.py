"""The OpenSSF model signature from layer tars: exactly the files unpack writes, in the order and shape
`model_signing` recomputes from a folder (checked by model_signing itself), and nothing it would refuse."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import model_signing
import pytest

from modelpack.errors import InputError
from modelpack.trust import cosign, keys, oms


def _tar(files: dict[str, bytes], links: dict[str, str] | None = None, hard: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_model_signing_accepts_a_folder_whose_names_sort_differently_as_paths(tmp_path: Path) -> None:
    # "a-b" < "a/b" as strings but not as paths: the statement must be in model_signing's own order
    layer1 = {"models/a-b": b"1", "models/a/b": b"2", "models/a.b": b"3"}
    layer2 = {"code/x.py": b"print(1)\n", "models/a-b": b"later layer wins"}
    files: dict[str, str] = {}
    oms.hash_layer(iter([_tar(layer1)]), files)
    oms.hash_layer(iter([_tar(layer2)]), files)
    made = keys.generate(tmp_path / "k")
    raw = oms.sign_files(keys.load_private(str(made.private)), "m", files)

    folder = tmp_path / "m"
    _write(folder, {**layer1, **layer2})
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: x\n")  # model_signing ignores git's files; so do we
    (folder / "model.sig").write_bytes(raw)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=made.public).verify(
        folder, folder / "model.sig"
    )
    assert oms.check_files(raw, files, [keys.load_public(str(made.public))]).ok


def test_a_hardlink_is_its_target_and_a_symlink_is_refused() -> None:
    files: dict[str, str] = {}
    oms.hash_layer(iter([_tar({"models/w": b"w"}, {"models/w2": "models/w"}, hard=True)]), files)
    assert files["models/w2"] == files["models/w"]
    with pytest.raises(InputError, match="symlink"):
        oms.hash_layer(iter([_tar({"models/w": b"w"}, {"models/l": "w"})]), {})


def test_check_files_names_what_differs(tmp_path: Path) -> None:
    made = keys.generate(tmp_path / "k")
    private, public = keys.load_private(str(made.private)), keys.load_public(str(made.public))
    files = {"models/w": "00" * 32, "code/c": "11" * 32}
    raw = oms.sign_files(private, "m", files)
    changed = oms.check_files(raw, {**files, "models/w": "22" * 32}, [public])
    assert not changed.ok and "models/w differs" in changed.detail
    extra = oms.check_files(raw, {**files, "docs/new": "33" * 32}, [public])
    assert not extra.ok and "docs/new is not signed" in extra.detail
    # a release signature is not a model signature, and the other way round
    release = cosign.sign_digest(private, "sha256:" + "ab" * 32, "r")
    assert "not an OpenSSF model signature" in oms.check_files(release, files, [public]).detail
    assert "not a cosign signature" in cosign.check_digest(raw, "sha256:" + "ab" * 32, [public]).detail
