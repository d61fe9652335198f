"""The naming model (one resolver, one rule) and the release rules that depend on it, on a real registry:
a bare name is the local store and never Docker Hub; a pulled release works with the registry gone;
a version tag names exactly one release; environment tags move only through promote and rollback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import _registry_binary
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.release_fixtures import ENV, EXAMPLES, variant

from modelpack import api
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets


def _store(tmp_path: Path) -> dict[str, str]:
    return {"MODELPACK_STORE": str(tmp_path / "store"), **ENV}


def test_a_bare_name_not_in_the_store_is_an_error_naming_the_store_never_docker_hub(tmp_path: Path) -> None:
    env = _store(tmp_path)
    for args in (
        ("push", "127.0.0.1:9/acme/wine", "--from", "wine-clf:7.7.7"),
        ("inspect", "acme/model:1.0"),
        ("unpack", "wine-clf:7.7.7", str(tmp_path / "out")),
        ("ls", "wine-clf"),
        ("history", "wine-clf", "prod"),
    ):
        done = run_main(*args, env=env)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert "local store" in done.stderr and str(tmp_path / "store") in done.stderr, done.stderr
        assert "docker.io" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_a_pulled_release_is_usable_by_its_name_with_the_registry_gone(
    tmp_path: Path, registry: RegistryProcess
) -> None:
    env = _store(tmp_path)
    own = RegistryProcess(root=tmp_path / "own-registry", binary=_registry_binary())
    own.start()
    try:
        built = api.build(Targets(store_path=tmp_path / "build-store"), EXAMPLES / "iris-onnx", environ=ENV)
        ref = f"{own.host}/acme/iris:{built.bundle.version}"
        with api.Targets(store_path=tmp_path / "build-store") as targets:
            api.push(targets, ref, source=built.tag)
        pulled = run_main("pull", ref, "--json", env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert json.loads(pulled.stdout)["tags"] == [ref]
    finally:
        own.stop()
    listed = json.loads(run_main("list", "--json", env=env).stdout)["releases"]
    assert [r["name"] for r in listed] == [ref]
    offline = run_main("inspect", ref, env=env)
    assert offline.returncode == 1 and own.host in offline.stderr  # the registry itself is gone
    assert "a pulled copy of" in offline.stderr and "exists in the local store: add --local" in offline.stderr
    down = run_main("unpack", ref, str(tmp_path / "never"), env=env)
    assert down.returncode == 1 and "add --local" in down.stderr and not (tmp_path / "never").exists()
    shown = run_main("inspect", ref, "--local", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["readFrom"], doc["digest"]) == ("store", built.digest)
    assert "--local: reading the local store's pulled copy" in shown.stderr  # and it says so
    out = tmp_path / "out"
    unpacked = run_main("unpack", ref, str(out), "--local", env=env)
    assert unpacked.returncode == 0, unpacked.stderr
    assert (out / "models" / "model.onnx").read_bytes() == (
        EXAMPLES / "iris-onnx" / "model.onnx"
    ).read_bytes()
    versions = run_main("ls", ref.rsplit(":", 1)[0], "--local", env=env)
    assert versions.returncode == 0 and versions.stdout.split() == [built.bundle.version], versions.stderr


def _project(tmp_path: Path) -> Path:
    return variant(tmp_path, "iris-onnx", metrics={"accuracy": 0.95})


def test_push_with_a_version_tag_pushes_that_version_or_refuses(tmp_path: Path, registry_repo: str) -> None:
    env = _store(tmp_path)
    proj = _project(tmp_path)
    for version in ("1.0.0", "1.0.1"):
        assert run_main("build", str(proj), "--no-image", "--version", version, env=env).returncode == 0
    store = LayoutStore(tmp_path / "store")
    name = "iris-onnx"
    digest = {v: store.get_manifest(f"{name}:{v}").digest for v in ("1.0.0", "1.0.1")}

    # the packfile says 1.0.0: the tag, not the packfile, chooses the release
    done = run_main("push", f"{registry_repo}:1.0.1", "--project", str(proj), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == digest["1.0.1"]

    missing = run_main("push", f"{registry_repo}:1.0.2", "--project", str(proj), env=env)
    assert missing.returncode == 2 and "1.0.0, 1.0.1" in missing.stderr, missing.stderr

    mismatch = run_main("push", f"{registry_repo}:2.0.0", "--from", f"{name}:1.0.1", env=env)
    assert mismatch.returncode == 2 and "is version 1.0.1, not 2.0.0" in mismatch.stderr, mismatch.stderr
    allowed = run_main("push", f"{registry_repo}:2.0.0", "--from", f"{name}:1.0.1", "--any-version", env=env)
    assert allowed.returncode == 0, allowed.stderr


def test_version_tags_are_immutable_unless_forced(tmp_path: Path, registry_repo: str) -> None:
    env = _store(tmp_path)
    proj = _project(tmp_path)
    assert run_main("build", str(proj), "--no-image", env=env).returncode == 0
    first = run_main("push", f"{registry_repo}:1.0.0", "--project", str(proj), "--json", env=env)
    assert first.returncode == 0, first.stderr
    old = json.loads(first.stdout)["digest"]
    same = run_main("push", f"{registry_repo}:1.0.0", "--project", str(proj), "--json", env=env)
    assert same.returncode == 0 and json.loads(same.stdout)["blobsCopied"] == 0, same.stderr

    (proj / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "f1_macro": 0.5}))  # a different 1.0.0
    assert run_main("build", str(proj), "--no-image", env=env).returncode == 0
    new = LayoutStore(tmp_path / "store").get_manifest("iris-onnx:1.0.0").digest
    assert new != old
    refused = run_main("push", f"{registry_repo}:1.0.0", "--project", str(proj), env=env)
    assert refused.returncode == 1, refused.stderr
    assert old in refused.stderr and new in refused.stderr and "--force" in refused.stderr
    remote = run_main("inspect", f"{registry_repo}:1.0.0", "--json", env=env)
    assert json.loads(remote.stdout)["digest"] == old  # nothing moved

    forced = run_main("push", f"{registry_repo}:1.0.0", "--project", str(proj), "--force", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    assert any(
        old in n and new in n and "recorded as sha256:" in n for n in json.loads(forced.stdout)["notes"]
    )
    from modelpack.oci import mediatypes as mt

    with api.Targets(store_path=tmp_path / "store") as targets:
        repo = targets.open(registry_repo).target
        trace = repo.referrers(new, mt.OVERWRITE_ARTIFACT)
    assert [d.annotations.get("dev.modelpack.overwrite.tag") for d in trace] == ["1.0.0"]


def test_tag_refuses_an_environment_tag(tmp_path: Path, registry_repo: str) -> None:
    env = {**_store(tmp_path), "MODELPACK_ACTOR": "ci"}
    proj = _project(tmp_path)
    assert run_main("build", str(proj), "--no-image", env=env).returncode == 0
    assert run_main("push", f"{registry_repo}:1.0.0", "--project", str(proj), env=env).returncode == 0
    ref = f"{registry_repo}:1.0.0"
    promoted = run_main("promote", ref, "prod", "--force", "--reason", "first", env=env)
    assert promoted.returncode == 0, promoted.stderr
    refused = run_main("tag", ref, "prod", env=env)
    assert refused.returncode == 1 and "promote" in refused.stderr, refused.stderr
    assert run_main("tag", ref, "stable", env=env).returncode == 0  # a plain tag still works


@pytest.mark.parametrize("text", ["Iris:1.0", "iris:-bad", "iris@sha256:nothex"])
def test_malformed_local_names_are_usage_errors(tmp_path: Path, text: str) -> None:
    done = run_main("inspect", text, env=_store(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr


def test_script_the_whole_path_from_the_api(tmp_path: Path, registry_repo: str) -> None:
    """What README shows: everything the CLI does, from `import modelpack.api`."""
    proj = shutil.copytree(EXAMPLES / "iris-onnx", tmp_path / "iris")
    with api.Targets(store_path=tmp_path / "store") as targets:
        built = api.build(targets, proj, environ=ENV)
        pushed = api.push(targets, registry_repo, source=built.tag)
        assert pushed.to_json()["destination"] == f"{registry_repo}:{built.bundle.version}"
        moved = api.promote(targets, pushed.destination, "staging", force=True, reason="scripted")
        assert moved.to_json()["toDigest"] == built.digest
        hist = api.history(targets, registry_repo, "staging")
        assert [e["action"] for e in hist.to_json()["events"]] == ["promote"]
        listed = api.ls(targets, registry_repo)
        assert listed.tags == (built.bundle.version, "staging")


def test_a_repository_declares_a_naming_pattern_that_push_enforces(
    tmp_path: Path, registry_repo: str
) -> None:
    """Team names were read by their shape; a repository now says what its version tags look like."""
    from support.places import make_release

    layout = LayoutStore(tmp_path / "layout")
    for v in ("model-bert-sst2-acc92-v5", "bert-5"):
        make_release(layout, v, v)
    env = {"MODELPACK_ACTOR": "ops@ci", **_store(tmp_path)}
    none = run_main("naming", registry_repo, "--json", env=env)
    assert none.returncode == 0 and json.loads(none.stdout)["naming"] is None
    pattern = "model-bert-[a-z0-9]+-acc[0-9]+-v[0-9]+"
    declared = run_main("naming", registry_repo, pattern, "--json", env=env)
    assert declared.returncode == 0, declared.stderr
    assert json.loads(declared.stdout)["naming"]["who"] == "ops@ci"
    good = run_main("push", f"{registry_repo}:model-bert-sst2-acc92-v5", "--from",
                    f"oci:{layout.root}:model-bert-sst2-acc92-v5", env=env)  # fmt: skip
    assert good.returncode == 0, good.stderr
    bad = run_main("push", f"{registry_repo}:bert-5", "--from", f"oci:{layout.root}:bert-5", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert f"this repository names versions by {pattern!r} (declared by ops@ci on " in bad.stderr
    shown = run_main("naming", registry_repo, env=env)
    assert pattern in shown.stdout
    typo = run_main("naming", registry_repo, "model-(", env=env)
    assert typo.returncode == 2 and "is not a regular expression" in typo.stderr
