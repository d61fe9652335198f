"""Hostile build inputs (issue 10): symlinks out of the project, stores packing themselves, alias bombs,
last-wins keys, non-JSON YAML, smuggled pip options, non-UTF-8 names, `build ../p1`.

Each test plays the attack against the real code path (the loader, `api.build`, the `modelpack` CLI).
Attacks that hung the old code run in a child process with a memory limit and a timeout, so a regression
fails instead of eating the machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from support.clirun import run_cli, script

from modelpack import api
from modelpack.bundle.lockfile.requirements import parse as parse_requirements
from modelpack.errors import InputError
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Manifest, parse
from modelpack.packfile import load_packfile
from modelpack.record.cases import load_cases
from modelpack.record.metrics import load_metrics_file, load_params_file
from modelpack.store.layout import LayoutStore
from modelpack.store.statcache import StatCache
from modelpack.targets import Targets

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom-handler"
PACKFILE = """\
name: p
version: "1.0"
model: {{paths: [{model}], format: other}}
code: {{paths: [{code}], handler: "handler:LinearModel"}}
dependencies: {{lockfile: requirements.lock, python: "3.11"}}
{extra}"""


def _project(where: Path, *, model: str = "weights.json", code: str = "handler.py", extra: str = "") -> Path:
    shutil.copytree(EXAMPLE, where)
    (where / "modelpack.yaml").write_text(PACKFILE.format(model=model, code=code, extra=extra))
    return where


def _layer_files(store: LayoutStore, tag: str, media_type: str) -> dict[str, tarfile.TarInfo]:
    raw = store.get_manifest(tag)
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Manifest)
    (layer,) = [d for d in doc.layers if d.media_type == media_type]
    with tarfile.open(fileobj=io.BytesIO(store.read_blob_bytes(layer.digest))) as tf:
        return {m.name: m for m in tf.getmembers()}


def _layer_digest(store: LayoutStore, tag: str, media_type: str) -> str:
    raw = store.get_manifest(tag)
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Manifest)
    return next(d.digest for d in doc.layers if d.media_type == media_type)


# --- item 2: symlinks and never-packed folders ---------------------------------------------------------


def test_link_to_etc_passwd_is_refused_listed_or_walked(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", model="model")
    (p / "model").mkdir()
    (p / "model" / "w.bin").write_bytes(b"w")
    (p / "model" / "passwd.txt").symlink_to("/etc/passwd")
    with pytest.raises(InputError) as walked:
        api.build(Targets(store_path=tmp_path / "store"), p, environ={})
    assert "model/passwd.txt is a symlink to /etc/passwd, outside the project directory" in str(walked.value)
    assert not (tmp_path / "store" / "blobs").exists()  # refused before anything was stored
    # Listed by name, the refusal names the packfile line and key too.
    listed_both = PACKFILE.format(model="model/w.bin, model/passwd.txt", code="handler.py", extra="")
    (p / "modelpack.yaml").write_text(listed_both)
    listed = r"modelpack\.yaml:3: model\.paths\[1\]: .*passwd\.txt is a symlink to /etc/passwd"
    with pytest.raises(InputError, match=listed):
        load_packfile(p)


def test_link_through_a_folder_link_and_out_of_a_packaged_dataset_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "home" / ".docker"
    secret.mkdir(parents=True)
    (secret / "config.json").write_text('{"auths": {"r": {"auth": "dG9rZW4="}}}')
    p = _project(tmp_path / "p", code=".")
    (p / "conf").symlink_to(secret)  # a directory link leaving the project
    with pytest.raises(InputError, match=r"/p/conf is a symlink to .*/home/\.docker, outside"):
        load_packfile(p)
    (p / "conf").unlink()
    (p / "data.csv").symlink_to(secret / "config.json")
    extra = "datasets: [{name: d, path: data.csv, package: true}]\n"
    (p / "modelpack.yaml").write_text(PACKFILE.format(model="weights.json", code="handler.py", extra=extra))
    with pytest.raises(InputError, match=r"datasets\[0\]\.path: .*data\.csv is a symlink to .*config\.json"):
        load_packfile(p)


@pytest.mark.parametrize("kind", ["dangling", "file-loop", "folder-loop"])
def test_dangling_and_looping_links_name_the_link_and_target(tmp_path: Path, kind: str) -> None:
    p = _project(tmp_path / "p", model="model")
    (p / "model").mkdir()
    (p / "model" / "w.bin").write_bytes(b"w")
    if kind == "dangling":
        (p / "model" / "gone.bin").symlink_to(p / "model" / "nowhere.bin")
        expected = r"gone\.bin is a symlink to .*/model/nowhere\.bin, which does not exist"
    elif kind == "file-loop":
        (p / "model" / "a").symlink_to("b")
        (p / "model" / "b").symlink_to("a")
        expected = r"model/[ab] is a symlink loop"
    else:
        (p / "model" / "sub").mkdir()
        (p / "model" / "sub" / "up").symlink_to("..")
        expected = r"model/sub/up is a symlink loop: it points at .*/p/model, a folder it is in"
    with pytest.raises(InputError, match=expected):
        load_packfile(p)


def test_link_inside_the_project_is_packed_as_the_file_content(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", model="model")
    (p / "model").mkdir()
    (p / "weights").mkdir()
    (p / "weights" / "v2.bin").write_bytes(b"real weights")
    (p / "model" / "latest.bin").symlink_to("../weights/v2.bin")
    store = LayoutStore(tmp_path / "store")
    record = api.build(Targets(store_path=store.root), p, environ={}).bundle.record
    member = _layer_files(store, "p:1.0", mt.MODEL_WEIGHT_TAR)["models/model/latest.bin"]
    assert member.isfile() and member.size == len(b"real weights")
    entry = next(f for f in record.files if f.path == "models/model/latest.bin")
    assert entry.sha256 == "sha256:" + hashlib.sha256(b"real weights").hexdigest()


def test_store_git_and_venv_in_the_project_are_never_packed(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", code=".")
    (p / ".git").mkdir()
    (p / ".git" / "config").write_text("[credential]\n\thelper = store token\n")
    (p / ".venv" / "lib").mkdir(parents=True)
    (p / ".venv" / "lib" / "site.py").write_text("x = 1\n")
    (p / "env" / "lib").mkdir(parents=True)  # a virtualenv by its pyvenv.cfg, whatever its name
    (p / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (p / "env" / "lib" / "big.py").write_text("y = 2\n")
    (p / "other-store").mkdir()  # some OCI layout that is not today's store
    (p / "other-store" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (p / "other-store" / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    store = LayoutStore(p / "store")  # MODELPACK_STORE inside the project
    digests, sizes = [], []
    for version in ("1", "2", "3", "4"):
        bundle = api.build(Targets(store_path=store.root), p, version=version, environ={}).bundle
        digests.append(_layer_digest(store, f"p:{version}", mt.MODEL_CODE_TAR))
        sizes.append(sum(d.size for d in bundle.layers))
    names = set(_layer_files(store, "p:4", mt.MODEL_CODE_TAR))
    assert "code/handler.py" in names
    never = {".git", ".venv", "env", "store", "other-store"}
    assert not [n for n in names if set(n.split("/")[1:2]) & never]
    # Four builds, one code layer: the store did not pack itself (it grew 7 KB -> 224 KB before).
    assert len(set(digests)) == 1 and len(set(sizes)) == 1


def test_a_partial_store_named_by_the_build_is_skipped_before_it_has_oci_layout(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", code=".")
    (p / "store" / "cache").mkdir(parents=True)  # what a build that failed early leaves: no oci-layout yet
    (p / "store" / "cache" / "stat.sqlite").write_bytes(b"x" * 4096)
    pf = load_packfile(p, skip=[p / "store"])
    assert not [f for f in pf.code.files if "store" in f.parts]
    assert [f for f in load_packfile(p).code.files if "store" in f.parts]  # only the named store is skipped


# --- item 7: alias bombs, bounded in time and memory --------------------------------------------------


def _bomb(indent: str = "") -> str:
    lines = [f"{indent}a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        cur, prev = chr(ord("a") + i), chr(ord("a") + i - 1)
        lines.append(f"{indent}{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _build_in_child(project: Path, store: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "MODELPACK_STORE": str(store)}
    start = time.monotonic()
    out = subprocess.run([str(script()), "build", str(project), "--no-image"], capture_output=True,
                         text=True, timeout=60, env=env, preexec_fn=_limited, check=False)  # fmt: skip
    return out, time.monotonic() - start


@pytest.mark.parametrize("where", ["inline", "params.yaml"])
def test_nine_levels_of_aliases_under_params_fail_fast_naming_the_file(tmp_path: Path, where: str) -> None:
    if where == "inline":
        p = _project(tmp_path / "p", extra="params:\n" + _bomb("  "))
        named = "modelpack.yaml"
    else:
        p = _project(tmp_path / "p", extra="params: params.yaml\n")
        (p / "params.yaml").write_text(_bomb())
        named = "params.yaml"
    out, took = _build_in_child(p, tmp_path / "store")
    assert out.returncode == 2, out.stderr
    assert f"{named}:" in out.stderr and "YAML aliases here expand to more than 100,000 values" in out.stderr
    assert took < 30  # generous: it is refused in milliseconds


def test_alias_count_and_self_reference_are_bounded(tmp_path: Path) -> None:
    many = "base: &b 1\n" + "".join(f"k{i}: *b\n" for i in range(1001))
    (tmp_path / "many.yaml").write_text(many)
    with pytest.raises(InputError, match=r"many\.yaml: more than 1000 YAML aliases"):
        load_params_file(tmp_path / "many.yaml")
    (tmp_path / "self.yaml").write_text("a: &a [1, *a]\n")
    with pytest.raises(InputError, match=r"self\.yaml:1: a YAML alias refers to a value it is in"):
        load_params_file(tmp_path / "self.yaml")


def test_deeply_nested_json_is_an_input_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("[" * 200_000)
    with pytest.raises(InputError, match=r"m\.json: not valid JSON: nested too deeply"):
        load_metrics_file(tmp_path / "m.json")
    (tmp_path / "cases.json").write_text('{"cases": ' + "[" * 200_000)
    with pytest.raises(InputError, match=r"cases\.json: not valid JSON: nested too deeply"):
        load_cases(tmp_path / "cases.json")


# --- item 16: duplicate and colliding keys, non-JSON YAML types ----------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("m.json", '{"accuracy": 0.5,\n "accuracy": 0.99}',
         r"m\.json:2: key 'accuracy' is given twice \(first on line 1\)"),
        ("m.json", '{"eval.f1": 0.9,\n "eval": {"f1": 0.1}}',
         r"m\.json:2: metric 'eval\.f1' is given twice: as 'eval\.f1' \(line 1\) and as 'eval' > 'f1'"),
        ("m.yaml", "acc: 0.5\nacc: 0.99\n", r"m\.yaml:2: key 'acc' is given twice \(first on line 1\)"),
        ("m.yaml", "1: 0.5\n'1': 0.9\n", r"m\.yaml:2: key '1' is given twice"),
    ],
)  # fmt: skip
def test_metric_keys_given_twice_are_refused_naming_both(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=expected):
        load_metrics_file(tmp_path / name)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("  tags: !!set {a, b}\n", r"modelpack\.yaml:7: !!set values are not supported"),
        ("  blob: !!binary aGVsbG8=\n", r"modelpack\.yaml:7: !!binary values are not supported"),
        ("  pairs: !!omap [{a: 1}]\n", r"modelpack\.yaml:7: !!omap values are not supported"),
        ("  x: !custom {a: 1}\n", r"modelpack\.yaml:7: !custom values are not supported"),
        ("  base: &b {lr: 1}\n  run: {<<: *b}\n", r"modelpack\.yaml:8: merge keys \(<<\) are not supported"),
        ("  lr.x: 1\n  lr: {x: 2}\n", r"param 'lr\.x' is given twice: as 'lr\.x' \(line 7\) and as 'lr' > "),
    ],
)
def test_params_hold_json_types_only(tmp_path: Path, params: str, expected: str) -> None:
    p = _project(tmp_path / "p", extra="params:\n" + params)
    with pytest.raises(InputError, match=expected):
        load_packfile(p)


def test_inline_metrics_spelled_twice_are_refused(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", extra="metrics:\n  values:\n    eval.f1: 0.9\n    eval: {f1: 0.1}\n")
    with pytest.raises(InputError, match=r"metrics\.values\.eval\.f1: is given twice \(as a dotted name"):
        load_packfile(p)


def test_a_case_with_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    case = json.dumps(json.loads((EXAMPLE / "cases.json").read_text())["cases"][0])
    text = '{"cases": [' + case[:-1] + ', "name": "other"}]}'  # the second name would silently win
    (tmp_path / "cases.json").write_text(text)
    with pytest.raises(InputError, match=r"cases\.json:1: not valid JSON: key 'name' is given twice"):
        load_cases(tmp_path / "cases.json")


# --- item 9: requirements lock option lines (-r/-c/-e lines themselves: tests/test_lockfile.py) ------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--index-url file:///x -r /other/unpinned.txt", r"r\.lock:1: --index-url takes one value"),
        ("--index-url file:///simple", r"r\.lock:1: --index-url 'file:///simple' is not an http\(s\) URL"),
        ("-f file:///tmp/wheels", r"r\.lock:1: -f 'file:///tmp/wheels' is not an http\(s\) URL"),
        ("--find-links ./wheels", r"r\.lock:1: --find-links './wheels' is not an http\(s\) URL"),
        ("--extra-index-url https://u:tok@x.example/s -c c", r"got 'https://\*\*\*@x\.example/s -c c'"),
        ("--no-index -r extra.txt", r"r\.lock:1: --no-index takes no value"),
        ("--trusted-host 'x -r y'", r"r\.lock:1: --trusted-host 'x -r y' is not a host name"),
        ("--only-binary :all: -e .", r"r\.lock:1: --only-binary takes one value"),
    ],
)
def test_lock_option_lines_take_only_known_validated_values(line: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected) as e:
        parse_requirements(f"{line}\nnumpy==2.0.0\n", "r.lock")
    assert "tok" not in str(e.value)  # an index credential never reaches the message


def test_valid_lock_options_are_kept_in_canonical_form() -> None:
    text = (
        '-i https://u:t@pypi.example/simple\n--extra-index-url="http://127.0.0.1:8080/simple"\n'
        "--trusted-host 127.0.0.1:8080\n--only-binary :all:\n--prefer-binary\nnumpy==2.0.0\n"
    )
    _, options, _ = parse_requirements(text, "r.lock")
    assert options == [
        "--index-url https://u:t@pypi.example/simple",
        "--extra-index-url http://127.0.0.1:8080/simple",
        "--trusted-host 127.0.0.1:8080",
        "--only-binary :all:",
        "--prefer-binary",
    ]


# --- item 11: file names that are not UTF-8 --------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_one_error_line(tmp_path: Path) -> None:
    p = _project(tmp_path / "p", model="model")
    (p / "model").mkdir()
    (p / "model" / "w.bin").write_bytes(b"w")
    with open(os.fsencode(p / "model") + b"/\xffbad.bin", "wb") as f:
        f.write(b"x")
    env = {"MODELPACK_STORE": str(tmp_path / "store")}
    out = run_cli("build", str(p), "--no-image", env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert r"file name '\xffbad.bin' is not UTF-8" in lines[0] and "internal error" not in lines[0]


def test_stat_cache_hashes_a_file_under_a_folder_that_is_not_utf8(tmp_path: Path) -> None:
    folder = os.fsdecode(os.fsencode(tmp_path) + b"/\xffdir")
    os.mkdir(folder)
    path = Path(folder, "w.bin")
    path.write_bytes(b"abc")
    with StatCache(tmp_path / "c.sqlite", clock=lambda: time.time_ns() + 10**10) as cache:
        expected = ("sha256:" + hashlib.sha256(b"abc").hexdigest(), 3)
        assert cache.file_digest(path) == expected
        assert cache.file_digest(path) == expected  # and the second answer comes from the cache
    with pytest.raises(InputError, match=r"\\xffdir/gone does not exist"):
        StatCache(tmp_path / "c.sqlite").file_digest(Path(folder, "gone"))


# --- item 12: `modelpack build ../p1` ----------------------------------------------------------------


def test_build_of_a_sibling_project_by_relative_path(tmp_path: Path) -> None:
    _project(tmp_path / "p1")
    (tmp_path / "p2").mkdir()
    out = run_cli("build", "../p1", "--no-image", cwd=tmp_path / "p2",
                  env={"MODELPACK_STORE": str(tmp_path / "store")}, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "built p:1.0" in out.stderr + out.stdout
