"""metrics.history: a training history (CSV or JSONL) checked at build, carried as a normalized JSON layer,
summarised in the record, shown by inspect and read back by api.training_curves (issue 15 item 3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import support.schemacheck as schemacheck
from fixtures.registry import RegistryProcess
from support.clirun import run_main
from support.models import affine_onnx
from support.packfiles import MINIMAL, make_project

from modelpack import api
from modelpack.errors import ContentError, InputError
from modelpack.oci import canonical
from modelpack.oci import mediatypes as mt
from modelpack.oci.model import Manifest, parse
from modelpack.record.curves import Curves
from modelpack.record.record import Record
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

ENV = {"SOURCE_DATE_EPOCH": "1700000000"}
# Lightning's CSVLogger: train and validation of one step on separate rows, epoch repeated on both.
CSV = "step,epoch,loss,val_acc\n0,0,0.9,\n10,0,0.7,\n10,0,,0.81\n20,1,0.5,0.86\n30,1,0.55,0.84\n"
JSONL = (
    '{"epoch": 1, "loss": 1.5}\n\n'  # a blank line is skipped
    '{"epoch": 2, "loss": 0.75, "accuracy": 0.9}\n'
    '{"epoch": 3, "loss": 1, "accuracy": null}\n'
)


def _make(root: Path, text: str, files: dict[str, str | bytes] | None = None) -> Path:
    make_project(root, text, files)
    affine_onnx(root / "model.onnx")  # a real ONNX file: the build checks the format
    return root


def _project(tmp_path: Path, history: str, files: dict[str, str | bytes], tail: str = "") -> Path:
    text = MINIMAL + f"metrics:\n  file: metrics.json\n  history: {history}\n" + tail
    return _make(tmp_path / "p", text, files)


def _bundle(store: LayoutStore, tag: str) -> Manifest:
    raw = store.get_manifest(tag)
    doc = parse(raw.raw, raw.media_type)
    assert isinstance(doc, Manifest)
    return doc


def test_csv_history_is_a_normalized_layer_summarised_in_the_record(tmp_path: Path) -> None:
    project = _project(tmp_path, "logs/train.csv", {"logs/train.csv": CSV})
    store = LayoutStore(tmp_path / "store")
    record = api.build(Targets(store_path=store.root), project, version="1.0.0", environ=ENV).bundle.record
    doc = _bundle(store, "demo:1.0.0")
    layers = [d for d in doc.layers if d.media_type == mt.METRICS_HISTORY]
    assert len(layers) == 1 and doc.layers[-1].media_type == mt.RECORD  # the record stays last
    raw = store.read_blob_bytes(layers[0].digest)
    assert json.loads(raw) == {
        "x": "step",
        "columns": ["epoch", "loss", "val_acc"],
        "rows": [[0, 0, 0.9, None], [10, 0, 0.7, 0.81], [20, 1, 0.5, 0.86], [30, 1, 0.55, 0.84]],
    }
    assert raw == canonical.dumps(json.loads(raw))  # canonical bytes
    # valid OCI, the model config's modelfs untouched (only tar layers are the model's filesystem)
    schemacheck.validate_manifest(json.loads(doc.to_bytes()))
    schemacheck.validate_descriptor(layers[0].to_json())
    config = json.loads(store.read_blob_bytes(doc.config.digest))
    schemacheck.validate_model_config(config)
    assert layers[0].digest not in config["modelfs"]["diffIds"]
    h = record.history
    assert h is not None and Record.from_bytes(doc.annotations[mt.ANN_RECORD]) == record
    assert (h.path, h.digest, h.size, h.x, h.rows) == (
        "logs/train.csv",
        layers[0].digest,
        len(raw),
        "step",
        4,
    )
    loss = next(c for c in h.columns if c.name == "loss")
    assert (loss.count, loss.first, loss.last, loss.min, loss.max) == (
        4,
        (0, 0.9),
        (30, 0.55),
        (20, 0.5),
        (0, 0.9),
    )
    assert loss.best is None and loss.better is None  # no gate, no declaration: not guessed from the name
    val = next(c for c in h.columns if c.name == "val_acc")
    assert (val.count, val.first) == (3, (10, 0.81))
    # same file, same layer: a rebuild is byte for byte the same
    again = api.build(Targets(store_path=tmp_path / "store2"), project, version="1.0.0", environ=ENV).bundle
    assert again.manifest.digest == _bundle(store, "demo:1.0.0").digest


def test_jsonl_history_with_directions_from_the_packfile_and_the_gates(tmp_path: Path) -> None:
    tail = "tests:\n  gates: ['accuracy >= 0.5']\n"
    history = "{file: train.jsonl, better: {loss: lower}}"
    project = _project(tmp_path, history, {"train.jsonl": JSONL}, tail)
    store = LayoutStore(tmp_path / "store")
    record = api.build(Targets(store_path=store.root), project, version="1.0.0", environ=ENV).bundle.record
    assert record.history is not None and record.history.x == "epoch" and record.history.rows == 3
    loss, acc = record.history.columns
    assert (loss.name, loss.better, loss.best, loss.last) == ("loss", "lower", (2, 0.75), (3, 1.0))
    assert (acc.name, acc.better, acc.best, acc.count) == ("accuracy", "higher", (2, 0.9), 1)
    with Targets(store_path=store.root, environ={}) as targets:
        result = api.training_curves(targets, "demo:1.0.0")
    assert result.history == record.history and result.curves is not None
    assert result.curves.rows == ((1, 1.5, None), (2, 0.75, 0.9), (3, 1, None))
    assert result.to_json()["curves"]["columns"] == ["loss", "accuracy"]


def test_inspect_shows_the_summary_and_its_json_validates(tmp_path: Path) -> None:
    project = _project(tmp_path, "train.csv", {"train.csv": CSV})
    store = tmp_path / "store"
    built = run_main(
        "build", str(project), "--no-image", "--version", "1.0.0", "--store", str(store), env=ENV
    )
    assert built.returncode == 0, built.stderr
    shown = run_main("inspect", "demo:1.0.0", "--store", str(store))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "history    train.csv: 4 rows by step" in out and "TRAINING CURVES" in out
    loss_row = next(line for line in out.splitlines() if line.startswith("loss "))
    assert loss_row.split() == ["loss", "4", "0.9", "@0", "0.55", "@30", "0.5", "@20", "0.9", "@0", "-"]
    assert any(line.startswith("history ") and "sha256:" in line for line in out.splitlines())  # layer row
    as_json = run_main("inspect", "demo:1.0.0", "--store", str(store), "--json")  # checked against the schema
    history = json.loads(as_json.stdout)["record"]["history"]
    assert history["rows"] == 4 and [c["name"] for c in history["columns"]] == ["epoch", "loss", "val_acc"]
    kinds = [layer["kind"] for layer in json.loads(as_json.stdout)["layers"]]
    assert kinds[-2:] == ["history", "record"]
    # unpack writes the project's files; the history layer (JSON, not a tar) is not one of them
    with Targets(store_path=store, environ={}) as targets:
        unpacked = api.unpack(targets, "demo:1.0.0", tmp_path / "out")
    assert unpacked.files and not any("history" in f or f.endswith("train.csv") for f in unpacked.files)


def test_curves_read_from_a_registry_and_without_a_history(tmp_path: Path, registry: RegistryProcess) -> None:
    project = _project(tmp_path, "train.csv", {"train.csv": CSV})
    store = LayoutStore(tmp_path / "store")
    api.build(Targets(store_path=store.root), project, version="1.0.0", environ=ENV)
    plain = _make(tmp_path / "plain", MINIMAL)
    api.build(Targets(store_path=store.root), plain, version="2.0.0", environ=ENV)
    with Targets(store_path=store.root, environ={}) as targets:
        for tag in ("1.0.0", "2.0.0"):
            api.push(targets, f"{registry.host}/acme/demo:{tag}", source=f"demo:{tag}")
        remote = api.training_curves(targets, f"{registry.host}/acme/demo:1.0.0")
        summary_only = api.training_curves(targets, f"{registry.host}/acme/demo:1.0.0", points=False)
        none = api.training_curves(targets, f"{registry.host}/acme/demo:2.0.0")
    assert remote.curves is not None and remote.curves.x == "step" and len(remote.curves.rows) == 4
    assert summary_only.curves is None and summary_only.history == remote.history
    assert none.history is None and none.curves is None and none.to_json()["curves"] is None


def _refusal(tmp_path: Path, history: str, files: dict[str, str | bytes]) -> str:
    project = _project(tmp_path, history, files)
    with pytest.raises(InputError) as e:
        api.build(Targets(store_path=tmp_path / "store"), project, version="1.0.0", environ=ENV)
    text = str(e.value)
    assert "\n" not in text
    return text.replace(f"{project}{os.sep}", "")  # the file as named relative to the project


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t.csv", "epoch_no,loss\n1,0.5\n",
         "t.csv: no 'step' or 'epoch' column (columns: 'epoch_no', 'loss')"),
        ("t.csv", "step,loss,acc\n1,0.5,0.1\n2,oops,0.2\n", "t.csv:3: column 'loss': 'oops' is not a number"),
        ("t.csv", "step,loss\n1,0.5\n2,nan\n", "t.csv:3: column 'loss': nan is not a finite number"),
        ("t.csv", "step,loss\n1,0.5\n2,0.4,9\n", "t.csv:3: 3 values, but the header names 2 columns"),
        ("t.csv", "step,loss\n5,0.5\n4,0.4\n", "t.csv:3: step 4 comes after step 5; step may not go back"),
        ("t.csv", "step,loss\n1,0.5\n1,0.4\n",
         "t.csv:3: column 'loss' has a second value at step 1 (first on line 2)"),
        ("t.csv", "step,loss\n", "t.csv: has a header but no rows"),
        ("t.jsonl", '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": "low"}\n',
         "t.jsonl:2: column 'loss': 'low' is not a number"),
        ("t.jsonl", '{"step": 1, "ok": true}\n', "t.jsonl:1: column 'ok': True is not a number"),
        ("t.jsonl", '{"step": 1}\n[2]\n', "t.jsonl:2: not a JSON object, but list"),
        ("t.jsonl", '{"step": 1, "loss": 0.5, "loss": 0.4}\n',
         "t.jsonl:1: column 'loss' is given twice on one line"),
        ("t.csv", "step,loss,loss\n1,2,3\n", "t.csv:1: column 'loss' is named twice"),
        ("t.jsonl", '{"step": 1, "loss": NaN}\n', "t.jsonl:1: not a JSON object: NaN is not a finite number"),
    ],
)  # fmt: skip
def test_a_bad_history_is_one_line_naming_file_row_and_column(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    assert _refusal(tmp_path, name, {name: content}).startswith(expected)


def test_a_history_outside_the_project_or_of_another_type_is_refused_at_its_packfile_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "outside.csv").write_text(CSV)
    text = _refusal(tmp_path, "../outside.csv", {})
    assert "metrics.history: '../outside.csv' is outside the directory of modelpack.yaml" in text
    assert text.startswith("modelpack.yaml:9: ")
    # a link inside the project that leads out of it is outside too
    project = _make(tmp_path / "l", MINIMAL + "metrics:\n  history: in.csv\n")
    os.symlink(tmp_path / "outside.csv", project / "in.csv")
    with pytest.raises(InputError) as e:
        api.build(Targets(store_path=tmp_path / "store"), project, environ=ENV)
    assert "in.csv is a symlink to" in str(e.value) and "outside the project directory" in str(e.value)
    text = _refusal(tmp_path / "x", "train.tsv", {"train.tsv": CSV})
    assert "metrics.history: 'train.tsv' is neither .csv nor .jsonl" in text
    text = _refusal(tmp_path / "m", "missing.csv", {})
    assert "metrics.history: 'missing.csv' does not exist" in text
    text = _refusal(tmp_path / "b", "{file: t.csv, better: {acc: up}}", {"t.csv": CSV})
    assert "metrics.history.better.acc: 'up' is not one of higher, lower" in text
    text = _refusal(tmp_path / "c", "{file: t.csv, better: {acc: higher}}", {"t.csv": CSV})
    assert "metrics.history.better names 'acc', which is not a column of" in text


def test_a_history_too_large_is_refused_unread(tmp_path: Path) -> None:
    big = "step,loss\n" + "1,0.5\n" * ((16 << 20) // 6 + 1)
    text = _refusal(tmp_path, "big.csv", {"big.csv": big})
    assert text.startswith("big.csv: larger than 16 MiB")
    rows = "step,loss\n" + "".join(f"{i},1\n" for i in range(1_000_001))
    assert len(rows) < 16 << 20
    text = _refusal(tmp_path / "r", "rows.csv", {"rows.csv": rows})
    assert "rows.csv:1000002: more than 1,000,000 rows" in text
    wide = "step," + ",".join(f"m{i}" for i in range(65)) + "\n1" + ",1" * 65 + "\n"
    assert "65 metric columns, more than 64" in _refusal(tmp_path / "w", "wide.csv", {"wide.csv": wide})


def test_the_cli_refuses_a_bad_history_in_one_line_exit_2(tmp_path: Path) -> None:
    project = _project(tmp_path, "t.csv", {"t.csv": "step,loss\n1,x\n"})
    result = run_main(
        "build", str(project), "--no-image", "--version", "1.0.0", "--store", str(tmp_path / "store"), env=ENV
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {project / 't.csv'}:2: column 'loss': 'x' is not a number"
    ]


def test_a_history_layer_of_another_shape_is_a_content_error() -> None:
    for bad in (
        b"[]",
        b'{"x": "time", "columns": [], "rows": []}',
        b'{"x": "step", "columns": ["a"], "rows": [[1]]}',
        b'{"x": "step", "columns": ["a"], "rows": [[1, "s"]]}',
        b"not json",
    ):
        with pytest.raises(ContentError):
            Curves.from_bytes(bad, where="layer")
    good = Curves("step", ("a",), ((1, 0.5), (2, None)))
    assert Curves.from_bytes(good.to_bytes(), where="layer") == good
