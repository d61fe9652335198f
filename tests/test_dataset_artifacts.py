"""Published datasets (issue 16 items 1-4) against the real registry: push/pull checked by `sha256sum -c`,
statistics with a label column, only changed files sent, a model built with `ref:` found by `ls --where`,
and bad inputs as one clear line."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.registry_helpers import client_for
from support.release_fixtures import EXAMPLES
from support.schemacheck import validate_manifest

from modelpack.bundle.datasets import hash_directory
from modelpack.oci import mediatypes as mt
from modelpack.registry.client import RegistryRepository

CSV = "a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n\n7,8,bird\n"


def _env(tmp: Path) -> dict[str, str]:
    return {
        "MODELPACK_STORE": str(tmp / "store"),
        "MODELPACK_ACTOR": "tester",
        "SOURCE_DATE_EPOCH": "1700000000",
    }


def _repo(registry: RegistryProcess, name: str) -> str:
    return f"{registry.host}/acme/{name}-{secrets.token_hex(3)}"


def _json(*args: str, env: dict[str, str]) -> dict[str, object]:
    out = run_main(*args, "--json", env=env)
    assert out.returncode == 0, out.stderr
    value = json.loads(out.stdout)
    assert isinstance(value, dict)
    return value


def test_push_pull_round_trip_is_checked_by_sha256sum(registry: RegistryProcess, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "part-0.csv").write_text(CSV)
    (data / "test.jsonl").write_text('{"x": 1, "label": "cat"}\n{"x": 2, "label": "dog", "y": 0}\n')
    (data / "README").write_bytes(b"free text\n")
    (data / "big.bin").write_bytes(os.urandom(1_500_000))  # a layer of its own
    env = _env(tmp_path)
    ref = _repo(registry, "data") + ":v1"
    pushed = _json("dataset", "push", str(data), ref, "--label", "label", "--source", "s3://b/data", env=env)
    # the artifact's hash is the one a model's record gives the same directory
    assert pushed["sha256"] == hash_directory(data)[0] and pushed["fileCount"] == 4

    got = _json("dataset", "inspect", ref, env=env)
    record = got["record"]
    assert isinstance(record, dict)
    assert record["classes"] == {"bird": 1, "cat": 3, "dog": 2} and record["rows"] == 6
    assert record["source"] == "s3://b/data" and record["who"] == "tester" and record["kind"] == "directory"
    by_path = {s["path"]: s for s in record["stats"]}
    assert by_path["train/part-0.csv"]["rows"] == 4 and by_path["train/part-0.csv"]["columns"] == [
        "a",
        "b",
        "label",
    ]
    assert by_path["test.jsonl"]["columns"] == ["x", "label", "y"]

    dest = tmp_path / "pulled"
    before = time.time()
    pulled = _json("dataset", "pull", ref, str(dest), env=env)
    assert sorted(pulled["files"]) == ["README", "big.bin", "test.jsonl", "train/part-0.csv"]  # type: ignore[arg-type]
    listed = {r["name"]: r["kind"] for r in _json("list", env=env)["releases"]}  # type: ignore[union-attr]
    assert "dataset" in listed.values() and "bundle" not in listed.values()  # a dataset is no bundle
    # dated when written, not 1970 (the layers' mtime 0): make-style staleness checks see them as new
    assert all((dest / f).stat().st_mtime >= before - 2 for f in pulled["files"])  # type: ignore[union-attr]
    listing = "".join(f"{f['sha256'].split(':')[1]}  {f['path']}\n" for f in record["files"])
    check = subprocess.run(["sha256sum", "-c", "-"], input=listing, cwd=dest, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 4, check.stdout + check.stderr
    assert (
        subprocess.run(["sha256sum"], input=listing, capture_output=True, text=True).stdout.split()[0]
        == (str(pushed["sha256"]).split(":")[1])
    )

    only = _json("dataset", "pull", ref, str(tmp_path / "csv"), "--filter", "*.csv", env=env)
    assert only["files"] == ["train/part-0.csv"] and not (tmp_path / "csv" / "big.bin").exists()

    # reproducible: a copy elsewhere (new mtimes, a fresh store) is the same artifact, so v1 takes it again
    copy = tmp_path / "elsewhere" / "data"
    shutil.copytree(data, copy)
    again = _json("dataset", "push", str(copy), ref, "--label", "label", "--source", "s3://b/data",
                  env={**env, "MODELPACK_STORE": str(tmp_path / "store2")})  # fmt: skip
    assert again["digest"] == pushed["digest"] and again["blobsCopied"] == 0

    listed = _json("dataset", "ls", ref.rsplit(":", 1)[0], env=env)
    assert [v["tag"] for v in listed["versions"]] == ["v1"]  # type: ignore[union-attr, index]


def test_a_new_version_with_one_changed_file_sends_that_file(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    data = tmp_path / "shards"
    data.mkdir()
    size = 1_200_000
    for i in range(10):
        (data / f"shard-{i}.bin").write_bytes(os.urandom(size))
    env = _env(tmp_path)
    repo = _repo(registry, "shards")
    first = _json("dataset", "push", str(data), f"{repo}:v1", env=env)
    assert first["blobsCopied"] == 12  # ten shards, the record, the empty config
    (data / "shard-3.bin").write_bytes(os.urandom(size))
    second = _json("dataset", "push", str(data), f"{repo}:v2", env=env)
    # one shard's layer and the new record; the other nine shards and the config were there
    assert second["blobsCopied"] == 2 and second["blobsSkipped"] == 10
    assert size < second["bytesCopied"] < size + 64 * 1024  # type: ignore[operator]
    # the registry saw it too: one shard-sized blob among the new version's layers it had to receive
    repository = RegistryRepository(client_for(registry.host), repo.split("/", 1)[1])
    manifest = json.loads(repository.get_manifest("v2").raw)
    assert manifest["artifactType"] == mt.DATASET_ARTIFACT
    validate_manifest(manifest)  # the OCI image-spec schema, vendored
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.MODEL_DATASET_TAR, mt.DATASET_RECORD}

    diff = _json("dataset", "diff", f"{repo}:v1", f"{repo}:v2", env=env)
    assert (
        [c["path"] for c in diff["changed"]] == ["shard-3.bin"] and not diff["added"] and not diff["removed"]
    )  # type: ignore[union-attr, index]

    again = run_main("dataset", "push", str(data), f"{repo}:v1", env=env)  # v1 names other content now
    assert again.returncode != 0 and again.stderr.count("\n") == 1 and "immutable" in again.stderr


def test_diff_shows_rows_and_class_shift(registry: RegistryProcess, tmp_path: Path) -> None:
    env = _env(tmp_path)
    repo = _repo(registry, "labels")
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,a\n2,a\n3,b\n")
    _json("dataset", "push", str(path), f"{repo}:v1", "--label", "y", env=env)
    path.write_text("x,y\n1,a\n2,b\n3,b\n4,c\n")
    _json("dataset", "push", str(path), f"{repo}:v2", "--label", "y", env=env)
    d = _json("dataset", "diff", f"{repo}:v1", f"{repo}:v2", env=env)
    assert d["rowsA"] == 3 and d["rowsB"] == 4 and d["rowsDelta"] == 1
    short = _json("dataset", "diff", f"{repo}:v1", "v2", env=env)  # a bare tag: in A's repository, as diff
    assert short == d
    shift = {c["class"]: (c["countA"], c["countB"], c["delta"]) for c in d["classes"]}  # type: ignore[union-attr]
    assert shift == {"a": (2, 1, -1), "b": (1, 2, 1), "c": (0, 1, 1)}


def _iris_with_ref(tmp: Path, ref: str, *, path: str | None, name: str = "iris-test") -> Path:
    dest = tmp / f"iris-{secrets.token_hex(3)}"
    shutil.copytree(EXAMPLES / "iris-onnx", dest)
    packfile = dest / "modelpack.yaml"
    doc = yaml.safe_load(packfile.read_text())
    entry: dict[str, object] = {"name": name, "ref": ref}
    if path is not None:
        entry["path"] = path
    doc["datasets"] = [d for d in doc["datasets"] if d["name"] != "iris-test"] + [entry]
    doc["metrics"]["dataset"] = name
    packfile.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def test_a_model_built_with_ref_records_the_digest_and_is_found(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    data_repo = _repo(registry, "iris-data")
    test_csv = EXAMPLES / "iris-onnx" / "data" / "iris-test.csv"
    pushed = _json("dataset", "push", str(test_csv), f"{data_repo}:v3", "--label", "species", env=env)
    model_repo = _repo(registry, "iris")
    for version, project in (
        ("1.0.0", _iris_with_ref(tmp_path, f"{data_repo}:v3", path="data/iris-test.csv")),
        ("1.1.0", _iris_with_ref(tmp_path, f"{data_repo}:v3", path=None, name="renamed")),
    ):
        _json("build", str(project), "--no-image", "--version", version, env=env)
        record = _json("inspect", f"iris-onnx:{version}", env=env)["record"]
        entry = next(d for d in record["datasets"] if d.get("ref"))
        assert (entry["digest"], entry["sha256"]) == (pushed["digest"], pushed["sha256"])
        assert (
            run_main("push", f"{model_repo}:{version}", "--from", f"iris-onnx:{version}", env=env).returncode
            == 0
        )
    _json("build", str(EXAMPLES / "iris-onnx"), "--no-image", "--version", "0.9.0", env=env)
    plain = _json("inspect", "iris-onnx:0.9.0", env=env)["record"]
    assert all("digest" not in d and "ref" not in d for d in plain["datasets"])  # type: ignore[union-attr]
    assert run_main("push", f"{model_repo}:0.9.0", "--from", "iris-onnx:0.9.0", env=env).returncode == 0

    found = _json("ls", model_repo, "--where", f"dataset={data_repo}:v3", env=env)
    assert sorted(v["tag"] for v in found["versions"]) == ["1.0.0", "1.1.0"]  # type: ignore[union-attr]
    # The portal's table answers the same: one filter, the published reference resolved to its digest.
    from modelpack import api

    with api.Targets(store_path=tmp_path / "store", environ={}) as targets:
        catalog = api.catalog(targets, model_repo, where=[f"dataset={data_repo}:v3"])
    assert sorted(e.tag for e in catalog.entries) == ["1.0.0", "1.1.0"]

    used = _json("dataset", "used-by", f"{data_repo}:v3", model_repo, env=env)
    uses = {u["tag"]: u for u in used["uses"]}  # type: ignore[union-attr]
    assert set(uses) == {"0.9.0", "1.0.0", "1.1.0"}  # 0.9.0 hashed the same file locally: same content
    assert uses["1.1.0"]["dataset"] == "renamed" and uses["1.1.0"]["matched"] == "digest"
    assert uses["0.9.0"]["matched"] == "sha256" and uses["1.0.0"]["role"] == "measured"
    assert uses["1.0.0"]["metrics"]["accuracy"] > 0.9


def test_bad_inputs_are_one_clear_line(registry: RegistryProcess, tmp_path: Path) -> None:
    env = _env(tmp_path)
    data_repo = _repo(registry, "bad")
    missing = run_main("dataset", "push", str(tmp_path / "nope"), f"{data_repo}:v1", env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr

    project = _iris_with_ref(tmp_path, f"{data_repo}:v9", path=None)
    no_ref = run_main("build", str(project), "--no-image", env=env)
    assert no_ref.returncode == 2 and no_ref.stderr.count("\n") == 1, no_ref.stderr
    assert f"{data_repo}:v9 does not exist" in no_ref.stderr

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "b.csv").write_text("x\n2\n")
    _json("dataset", "push", str(folder), f"{data_repo}:v1", env=env)
    project = _iris_with_ref(tmp_path, f"{data_repo}:v1", path="local")
    shutil.copytree(folder, project / "local")
    (project / "local" / "b.csv").write_text("x\n3\n")
    differs = run_main("build", str(project), "--no-image", env=env)
    assert differs.returncode == 2 and differs.stderr.count("\n") == 1, differs.stderr
    assert "b.csv differs" in differs.stderr and "is not the published" in differs.stderr

    not_dataset = run_main(
        "dataset", "inspect", f"{registry.host}/acme/nothing-{secrets.token_hex(3)}:v1", env=env
    )
    assert (
        not_dataset.returncode != 0
        and not_dataset.stderr.count("\n") == 1
        and "Traceback" not in not_dataset.stderr
    )


@pytest.mark.parametrize("installed", [True, False])
def test_parquet_statistics_or_a_note(
    tmp_path: Path, installed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelpack.record.datastats import PARQUET_NOTE, file_stats

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", "a"]}), path)
    if not installed:  # pyarrow is an optional extra: what a machine without it gets
        real = builtins.__import__

        def no_pyarrow(name: str, *args: object, **kw: object) -> object:
            if name.startswith("pyarrow"):
                raise ImportError(name)
            return real(name, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    stats, note = file_stats("t.parquet", path, "y")
    if installed:
        assert stats is not None and stats.rows == 3 and stats.columns == ("x", "y") and note is None
        assert dict(stats.classes) == {"a": 2, "b": 1}
    else:
        assert stats is None and note is not None and PARQUET_NOTE in note


def test_dataset_entry_ref_and_digest_round_trip_and_are_omitted_when_absent() -> None:
    from modelpack.record.record import DatasetEntry, Record

    digest = "sha256:" + "ab" * 32
    with_ref = DatasetEntry("d", "sha256:" + "cd" * 32, 3, 1, ref="r.io/acme/d:v3", digest=digest)
    plain = DatasetEntry("e", None, 0, 0, uri="https://x")
    record = Record(name="m", version="1", created="2026-01-01T00:00:00Z", datasets=(with_ref, plain))
    raw = record.to_bytes()
    assert Record.from_bytes(raw).datasets == (with_ref, plain) and Record.from_bytes(raw).to_bytes() == raw
    shown = json.loads(raw)["datasets"]
    assert shown[0]["ref"] == "r.io/acme/d:v3" and shown[0]["digest"] == digest
    assert "ref" not in shown[1] and "digest" not in shown[1]


def test_pull_refuses_a_record_that_lies_about_a_file_and_writes_nothing(tmp_path: Path) -> None:
    from modelpack.oci.model import Manifest, parse
    from modelpack.record.dataset import DatasetRecord
    from modelpack.record.record import FileEntry
    from modelpack.store.layout import LayoutStore

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    (data / "b.csv").write_text("x\n2\n")
    env = _env(tmp_path)
    layout = tmp_path / "layout"
    _json("dataset", "push", str(data), f"oci:{layout}:v1", env=env)
    store = LayoutStore(layout)
    raw = store.get_manifest("v1")
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Manifest)
    record_desc = next(d for d in doc.layers if d.media_type == mt.DATASET_RECORD)
    record = DatasetRecord.from_bytes(store.read_blob_bytes(record_desc.digest))
    forged = [
        FileEntry(f.path, "sha256:" + "0" * 64, f.size) if f.path == "b.csv" else f for f in record.files
    ]
    lie = store.put_blob_bytes(
        DatasetRecord(**{**record.__dict__, "files": tuple(forged)}).to_bytes(), mt.DATASET_RECORD
    )
    layers = tuple(lie if d == record_desc else d for d in doc.layers)
    evil = Manifest(doc.config, layers, artifact_type=doc.artifact_type, annotations=dict(doc.annotations))
    store.put_document(evil, tag="evil")
    dest = tmp_path / "out"
    out = run_main("dataset", "pull", f"oci:{layout}:evil", str(dest), env=env)
    assert out.returncode != 0 and out.stderr.count("\n") == 1 and "b.csv hashes to" in out.stderr, out.stderr
    assert not dest.exists()  # staged, refused, removed: nothing written
    ok = _json("dataset", "pull", f"oci:{layout}:v1", str(dest), env=env)
    assert ok["files"] == ["a.csv", "b.csv"] and (dest / "b.csv").read_text() == "x\n2\n"


def test_the_record_names_the_commit_and_dirty_state_it_came_from(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "t.tsv").write_text("a\tb\n1\tx\n")

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "data")
    (repo / "data" / "t.tsv").write_text("a\tb\n1\tx\n2\ty\n")  # tracked and changed: dirty
    env = _env(tmp_path)
    _json("dataset", "push", str(repo / "data"), f"oci:{tmp_path / 'layout'}:v1", "--label", "b", env=env)
    record = _json("dataset", "inspect", f"oci:{tmp_path / 'layout'}:v1", env=env)["record"]
    assert record["git"]["commit"] == git("rev-parse", "HEAD") and record["git"]["dirty"] is True  # type: ignore[index]
    assert record["rows"] == 2 and record["classes"] == {"x": 1, "y": 1}  # type: ignore[index]


def test_the_generated_workflow_pulls_datasets_by_reference(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """A `ref:` dataset with a local `path:` is not in git: the workflow's step pulls it before the build."""
    import sys

    from modelpack import init as scaffold

    env = _env(tmp_path)
    data_repo = _repo(registry, "ci-data")
    test_csv = EXAMPLES / "iris-onnx" / "data" / "iris-test.csv"
    _json("dataset", "push", str(test_csv), f"{data_repo}:v3", env=env)
    project = _iris_with_ref(tmp_path, f"{data_repo}:v3", path="data/iris-test.csv")
    (project / "data" / "iris-test.csv").unlink()  # as a fresh checkout has it: not in git
    scaffold.init(tmp_path / "scaffold", modelpack_from="1.0.0")
    workflow = yaml.safe_load((tmp_path / "scaffold" / ".github/workflows/modelpack.yml").read_text())
    step = next(s for s in workflow["jobs"]["release"]["steps"] if s.get("name") == "Datasets by reference")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=project,
        env={**os.environ, **env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (project / "data" / "iris-test.csv").read_bytes() == test_csv.read_bytes()
    built = run_main("build", str(project), "--no-image", env=env)  # the local copy checks against the ref
    assert built.returncode == 0, built.stderr
