"""Extraction an attacker with push rights cannot steer (issue 21 items 1, 3, 7, 10): hostile layers reach
the extractor through `unpack` (a layout and the real registry), `dataset pull` and the Docker runtime's
code extraction; links nested past PATH_MAX, link chains that each look inside, links already in DIR,
version-control metadata, and dataset versions whose layers omit files."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.hostile_tar import hostile_tar, pathmax_escape
from support.release_fixtures import EXAMPLES

from modelpack import api
from modelpack.errors import ContentError, InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Manifest, parse
from modelpack.oci.untar import UNSIGNED_TOP, bundle_path, safe_extract, vcs_path
from modelpack.record.dataset import DatasetRecord
from modelpack.record.git import git_info
from modelpack.release.view import load_release
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets
from modelpack.testing.unpacked import release_files
from modelpack.trust import oms
from modelpack.unpack import unpack

ENV = {"SOURCE_DATE_EPOCH": "1700000000", "MODELPACK_ACTOR": "tester"}
CHAIN = [("q", "dir", ""), ("q/r", "sym", ".."), ("up", "sym", "q/r/../../.."), ("up/evil", "file", b"x")]


def _everything(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*"))


# --- the extractor itself -----------------------------------------------------------------------------


@pytest.mark.parametrize("members", [pathmax_escape(), CHAIN], ids=["pathmax", "chain"])
def test_links_nested_past_path_max_or_chained_are_refused(tmp_path: Path, members: list) -> None:
    (tmp_path / "outside").mkdir()
    dest = tmp_path / "dest"
    with pytest.raises(InputError, match="symlink"):
        safe_extract(io.BytesIO(hostile_tar(*members)), dest)
    assert not (tmp_path / "outside" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not [p for p in dest.rglob("*") if p.is_symlink()]


def test_a_link_already_in_dest_is_never_followed_even_past_path_max(tmp_path: Path) -> None:
    """Links the extractor did not write (there before, or raced in) are refused on the way by the kernel
    (O_NOFOLLOW on each folder), however deep: no path string is ever resolved."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    comp = "d" * 247
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):  # 20 * 248 bytes: past PATH_MAX (4096), made relative to a descriptor
            os.mkdir(comp, dir_fd=fd)
            nxt = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.symlink(str(outside), "out", dir_fd=fd)
    finally:
        os.close(fd)
    name = "/".join([comp] * 20) + "/out/evil"
    for force in (False, True):
        with pytest.raises(InputError, match="is a link or not a folder"):
            safe_extract(io.BytesIO(hostile_tar((name, "file", b"x"))), dest, force=force)
    (dest / "models").symlink_to(outside)  # a shallow one too
    with pytest.raises(InputError, match=r"'models' .* is a link"):
        safe_extract(io.BytesIO(hostile_tar(("models/evil", "file", b"x"))), dest)
    assert list(outside.iterdir()) == []


def test_long_names_pax_and_gnu_round_trip_and_hardlinks_stay_inside(tmp_path: Path) -> None:
    long = "models/" + "/".join(["ü" * 60] * 3) + "/w.bin"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            for name, data in ((long, b"a" * 10_000), ("models/x", b"")):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 1234, 0o700
                tf.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("models/copy")
            link.type, link.linkname = tarfile.LNKTYPE, long
            tf.addfile(link)
        dest = tmp_path / str(fmt)
        chunks = [buf.getvalue()[i : i + 777] for i in range(0, len(buf.getvalue()), 777)]  # odd splits
        assert safe_extract(chunks, dest) == [long, "models/x", "models/copy"]
        assert (dest / long).read_bytes() == b"a" * 10_000 and (dest / "models/x").read_bytes() == b""
        assert os.stat(dest / long).st_mtime == 1234 and os.stat(dest / long).st_mode & 0o777 == 0o755
        assert os.path.samefile(dest / "models/copy", dest / long)


def test_sparse_truncated_and_malformed_streams_are_refused(tmp_path: Path) -> None:
    good = hostile_tar(("a", "file", b"x" * 2000))
    sparse = bytearray(good[:512])
    sparse[156:157] = tarfile.GNUTYPE_SPARSE
    sparse[148:156] = b"        "
    sparse[148:155] = f"{sum(sparse):06o}\0".encode()
    cases = {
        "truncated": good[:1024],
        "sparse": bytes(sparse) + bytes(1024),
        "bad checksum": good[:100] + b"X" + good[101:],
        "huge pax": _pax_header(2 << 20),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("t")
        info.pax_headers = {"mtime": "1e300"}
        tf.addfile(info, io.BytesIO(b""))
    cases["time out of range"] = buf.getvalue()
    for what, data in cases.items():
        with pytest.raises(InputError, match="not a valid tar stream"):
            safe_extract([data], tmp_path / what)
    with pytest.raises(InputError, match=r"refused tar member 'models/xxx.*File name too long"):
        safe_extract([hostile_tar(("models/" + "x" * 300, "file", b"x"))], tmp_path / "long")


def _pax_header(size: int) -> bytes:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, size
    return info.tobuf(tarfile.USTAR_FORMAT) + bytes(1024)


def test_the_path_rules() -> None:
    for bad in (".git/config", "code/.git/hooks/post-checkout", "data/.hg/hgrc", "x/.svn/entries"):
        assert vcs_path(bad) and bundle_path(bad)
    for top in ("model.sig", ".github/workflows/x.yml", ".gitignore", ".gitattributes"):
        assert bundle_path(top) and not vcs_path(top)
    for fine in ("code/.github/ci.yml", "code/.gitignore", "models/model.sig", "models/w.bin", ".gitx"):
        assert not bundle_path(fine)
    assert set(oms.IGNORED) == UNSIGNED_TOP  # the extractor refuses exactly what the signature skips


# --- through unpack, the registry, the Docker runtime ---------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LayoutStore, str]:
    store = LayoutStore(tmp_path_factory.mktemp("sec-extract") / "store")
    return store, api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ=ENV).tag


def _with_layer(store: LayoutStore, tag: str, media_type: str, layer: bytes, name: str) -> str:
    bundle = load_release(store, tag).bundle_manifest
    assert bundle is not None
    evil = store.put_blob_bytes(layer, media_type)
    layers = tuple(evil if d.media_type == media_type else d for d in bundle.layers)
    store.put_document(Manifest(config=bundle.config, layers=layers, artifact_type=bundle.artifact_type,
                                annotations=bundle.annotations), tag=name)  # fmt: skip
    return name


HOSTILE = {
    "pathmax": pathmax_escape("../../outside"),
    "chain": CHAIN,
    "inside-link": [("models/w.bin", "file", b"w"), ("models/latest.bin", "sym", "w.bin")],
    "git-config": [("code/.git/config", "file", b"[core]\n\tfsmonitor = touch /tmp/pwned\n")],
    "top-git": [(".git/config", "file", b"[core]\n\tfsmonitor = touch /tmp/pwned\n")],
    "model-sig": [("model.sig", "file", b"{}")],
    "github": [(".github/workflows/x.yml", "file", b"on: push\n")],
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_unpack_and_the_docker_runtime_refuse_hostile_layers(
    built: tuple[LayoutStore, str], tmp_path: Path, kind: str
) -> None:
    store, tag = built
    ref = _with_layer(store, tag, mt.MODEL_CODE_TAR, hostile_tar(*HOSTILE[kind]), f"iris-onnx:{kind}")
    (tmp_path / "outside").mkdir()
    dest = tmp_path / "work" / "dest"
    dest.parent.mkdir()
    before = _everything(tmp_path)
    with pytest.raises(InputError, match="refused tar member"):
        unpack(store, ref, dest)
    # `modelpack test --runtime docker` extracts the code layer on the host through this call
    with pytest.raises(InputError, match="refused tar member"):
        release_files(store, load_release(store, ref, layers=True), tmp_path / "cache", code_only=True)
    assert [p for p in _everything(tmp_path) if "/cache" not in p] == before
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() or p.is_symlink()]


def test_a_hostile_bundle_pushed_to_the_registry_is_refused_by_unpack(
    registry: RegistryProcess, built: tuple[LayoutStore, str], tmp_path: Path
) -> None:
    store, tag = built
    name = _with_layer(
        store, tag, mt.MODEL_CODE_TAR, hostile_tar(*pathmax_escape("../../outside")), "iris-onnx:px"
    )
    ref = f"{registry.host}/acme/hostile-{secrets.token_hex(3)}:1.0.0"
    env = {**ENV, "MODELPACK_STORE": str(store.root)}
    pushed = run_main("push", ref, "--from", name, env=env)
    assert pushed.returncode == 0, pushed.stderr
    (tmp_path / "outside").mkdir()
    out = run_main("unpack", ref, str(tmp_path / "work" / "dest"), env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "symlink" in out.stderr, out.stderr
    assert list((tmp_path / "outside").iterdir()) == [] and not (tmp_path / "work" / "dest").exists()


# --- datasets -----------------------------------------------------------------------------------------


def _pushed_dataset(tmp_path: Path) -> tuple[LayoutStore, Manifest, DatasetRecord, dict[str, str]]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    (data / "b.csv").write_text("x\n2\n")
    env = {**ENV, "MODELPACK_STORE": str(tmp_path / "store")}
    out = run_main("dataset", "push", str(data), f"oci:{tmp_path / 'layout'}:v1", env=env)
    assert out.returncode == 0, out.stderr
    store = LayoutStore(tmp_path / "layout")
    raw = store.get_manifest("v1")
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Manifest)
    record_desc = next(d for d in doc.layers if d.media_type == mt.DATASET_RECORD)
    return store, doc, DatasetRecord.from_bytes(store.read_blob_bytes(record_desc.digest)), env


def _forged(store: LayoutStore, doc: Manifest, record: DatasetRecord, data: bytes | None, tag: str) -> None:
    """`doc` with its record replaced by `record` and (when given) its data layer by the tar `data`."""
    layers = []
    for d in doc.layers:
        if d.media_type == mt.DATASET_RECORD:
            d = store.put_blob_bytes(record.to_bytes(), mt.DATASET_RECORD)
        elif d.media_type == mt.MODEL_DATASET_TAR and data is not None:
            d = replace(store.put_blob_bytes(data, mt.MODEL_DATASET_TAR), annotations=d.annotations)
        layers.append(d)
    store.put_document(Manifest(doc.config, tuple(layers), artifact_type=doc.artifact_type,
                                annotations=dict(doc.annotations)), tag=tag)  # fmt: skip


def test_dataset_pull_and_push_of_a_hostile_version_run_no_command(tmp_path: Path) -> None:
    from modelpack.record.record import FileEntry

    store, doc, record, env = _pushed_dataset(tmp_path)
    marker = tmp_path / "PWNED"
    config = f"[core]\n\tfsmonitor = touch {marker}; false\n".encode()
    entry = FileEntry(".git/config", "sha256:" + hashlib.sha256(config).hexdigest(), len(config))
    lying = DatasetRecord(**{**record.__dict__, "files": (*record.files, entry)})
    layer = hostile_tar(
        ("a.csv", "file", b"x\n1\n"), ("b.csv", "file", b"x\n2\n"), (".git/config", "file", config)
    )
    _forged(store, doc, lying, layer, "listed")  # the record lists it and the layer holds it
    _forged(store, doc, record, layer, "unlisted")  # only the layer holds it
    project = tmp_path / "project"
    project.mkdir()
    for tag, expected in (("listed", "lists .git/config"), ("unlisted", "refused tar member '.git/config'")):
        out = run_main("dataset", "pull", f"oci:{store.root}:{tag}", str(project / "data"), env=env)
        assert out.returncode != 0 and expected in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert not (project / "data").exists()
    # Were such a folder there anyway (copied by hand), pushing it from the project runs none of its config.
    data = project / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    subprocess.run(["git", "init", "-q", str(data)], check=True)
    subprocess.run(["git", "-C", str(data), "add", "."], check=True)
    who = ["-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run(["git", "-C", str(data), *who, "commit", "-qm", "x"], check=True)
    with (data / ".git" / "config").open("a") as f:
        f.write(f"[core]\n\tfsmonitor = touch {marker}; false\n")
    hook = data / ".git" / "hooks" / "post-index-change"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    out = run_main("dataset", "push", "data", f"oci:{tmp_path / 'layout2'}:v1", env=env, cwd=project)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
    pushed = run_main("dataset", "inspect", f"oci:{tmp_path / 'layout2'}:v1", "--json", env=env)
    assert '".git/' not in pushed.stdout  # the folder's own repository is neither read nor packed
    # git in a project's own repository, hardened: the commit is read and no configured command runs
    assert (info := git_info(data)) is not None and len(info.commit) == 40
    assert not marker.exists()


def test_dataset_pull_of_a_version_whose_layers_omit_a_listed_file_writes_nothing(tmp_path: Path) -> None:
    store, doc, record, env = _pushed_dataset(tmp_path)
    _forged(store, doc, record, hostile_tar(("a.csv", "file", b"x\n1\n")), "short")  # b.csv left out
    dest = tmp_path / "out"
    out = run_main("dataset", "pull", f"oci:{store.root}:short", str(dest), env=env)
    assert out.returncode == 1 and "layers lack b.csv, which its record lists" in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and not dest.exists()
    dest.mkdir()
    (dest / "keep").write_text("mine")
    out = run_main("dataset", "pull", f"oci:{store.root}:short", str(dest), "--force", env=env)
    assert out.returncode == 1 and sorted(p.name for p in dest.iterdir()) == ["keep"]
    with pytest.raises(ContentError):
        from modelpack.dataset.read import verify_files

        verify_files(record, dest, [], ["a.csv"])


def test_the_build_refuses_what_unpack_would_and_a_dataset_push_packs_no_vcs_metadata(tmp_path: Path) -> None:
    import shutil

    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "custom-handler", proj)
    (proj / ".hg").mkdir()
    (proj / ".hg" / "hgrc").write_text("[hooks]\npre-status = touch /tmp/pwned\n")
    text = (proj / "modelpack.yaml").read_text()
    (proj / "modelpack.yaml").write_text(text.replace("paths: [handler.py]", "paths: [handler.py, .hg/hgrc]"))
    with pytest.raises(InputError, match=r"code/\.hg/hgrc: \.hg is version-control metadata"):
        api.build(Targets(store_path=tmp_path / "store"), proj, environ=ENV)
    (proj / "modelpack.yaml").write_text(text.replace("paths: [handler.py]", "paths: [.]"))
    built = api.build(Targets(store_path=tmp_path / "store"), proj, environ=ENV)  # a walk leaves it out
    assert built.tag
    (proj / "gitfile").mkdir()
    (proj / "gitfile" / ".git").write_text("gitdir: /elsewhere\n")  # a worktree's .git is a file
    out = run_main("dataset", "push", str(proj / "gitfile" / ".git"), f"oci:{tmp_path / 'l'}:v1", env=ENV)
    assert out.returncode == 2 and "version-control metadata" in out.stderr, out.stderr


def test_what_the_model_signature_hashes_is_what_unpack_writes(tmp_path: Path) -> None:
    """A GNU long name followed by a pax path: tarfile takes the long name, a pax-first reader the pax
    path. Hashing and extraction share one parser (oci/tarread.members), so they cannot disagree on a name."""

    def pad(data: bytes) -> bytes:
        return data + bytes(-len(data) % 512)

    long = tarfile.TarInfo._create_gnu_long_header(  # type: ignore[attr-defined]
        "models/from-longname", tarfile.GNUTYPE_LONGNAME, "utf-8", "strict"
    )
    pax = tarfile.TarInfo._create_pax_generic_header({"path": "models/from-pax"}, tarfile.XHDTYPE, "utf-8")  # type: ignore[attr-defined]
    info = tarfile.TarInfo("models/short")
    info.size = 3
    layer = long + pax + info.tobuf(tarfile.USTAR_FORMAT) + pad(b"abc") + bytes(1024)
    hashed: dict[str, str] = {}
    oms.hash_layer([layer], hashed)
    written = safe_extract([layer], tmp_path / "out")
    assert list(hashed) == written == ["models/from-pax"]
    assert (
        hashed["models/from-pax"]
        == hashlib.sha256((tmp_path / "out/models/from-pax").read_bytes()).hexdigest()
    )
