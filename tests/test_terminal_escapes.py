"""Registry content is shown escaped: a metric named `\\x1b[2J...ALL GATES PASSED`, a promotion reason with
escapes and rich markup, never reach the terminal as control sequences (issue 10 item 14). JSON keeps the
exact values (json.dumps escapes them)."""

from __future__ import annotations

import json
from pathlib import Path

from support.clirun import run_main
from support.release_fixtures import ENV, EXAMPLES

from modelpack import api
from modelpack.oci.model import Index, parse
from modelpack.oci.target import RawManifest
from modelpack.record.record import Metric
from modelpack.release.index import release_index
from modelpack.store.layout import LayoutStore
from modelpack.targets import Targets

HOSTILE = "\x1b[2J\x1b[H\x9b31mALL GATES PASSED\x07 [bold red]ok[/]"


def _hostile_release(tmp_path: Path) -> tuple[Path, str]:
    """A release whose record names a metric HOSTILE, in an OCI layout (as a registry would hand it back)."""
    store = LayoutStore(tmp_path / "store")
    built = api.build(Targets(store_path=store.root), EXAMPLES / "iris-onnx", environ=ENV)
    record = built.bundle.record
    metrics = {**record.metrics, HOSTILE: Metric(1.0, HOSTILE)}
    from dataclasses import replace

    index = release_index(None, built.bundle.manifest, replace(record, metrics=metrics))
    layout = LayoutStore(tmp_path / "layout")
    for d in (built.bundle.config, *built.bundle.layers):
        with store.read_blob(d) as chunks:
            layout.write_blob(d, chunks)
    bundle_raw = store.get_manifest(built.bundle.manifest.digest)
    layout.put_manifest(bundle_raw.digest, bundle_raw)
    assert isinstance(parse(index.to_bytes()), Index)
    for tag in ("1.0.0", "1.0.1"):
        layout.put_manifest(tag, RawManifest(index.to_bytes(), index.media_type, index.digest))
    return tmp_path / "layout", HOSTILE


def _clean(text: str) -> None:
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text, repr(text)


def test_inspect_ls_diff_and_history_escape_registry_content(tmp_path: Path) -> None:
    layout, hostile = _hostile_release(tmp_path)
    ref = f"oci:{layout}:1.0.0"
    env = {"MODELPACK_STORE": str(tmp_path / "store"), "MODELPACK_ACTOR": HOSTILE}
    shown = run_main("inspect", ref, env=env)
    assert shown.returncode == 0, shown.stderr
    _clean(shown.stdout + shown.stderr)
    assert "\\x1b[2J" in shown.stdout and "[bold red]ok[/]" in shown.stdout  # shown, escaped, not markup
    doc = json.loads(run_main("inspect", ref, "--json", env=env).stdout)
    assert hostile in doc["record"]["metrics"]  # JSON keeps the exact name
    listed = run_main("ls", f"oci:{layout}", "--sort", hostile, env=env)
    assert listed.returncode == 0, listed.stderr
    _clean(listed.stdout + listed.stderr)
    changed = run_main("diff", ref, "1.0.1", env=env)
    assert changed.returncode == 0, changed.stderr
    _clean(changed.stdout + changed.stderr)
    moved = run_main("promote", ref, "prod", "--force", "--reason", hostile, env=env)
    assert moved.returncode == 0, moved.stderr
    _clean(moved.stdout + moved.stderr)
    history = run_main("history", f"oci:{layout}", "prod", env=env)
    assert history.returncode == 0, history.stderr
    _clean(history.stdout + history.stderr)
    assert "ALL GATES PASSED" in history.stdout
    failed = run_main("inspect", f"oci:{layout}:{'x' * 3}", env=env)  # an error line is escaped too
    _clean(failed.stderr)
