"""`-m "not engine"` is a run without Docker: every test that reaches the Docker engine (the `docker_engine`
fixture, directly or through another fixture) carries the `engine` marker. Checked by collecting the suite
in a fresh pytest with a small plugin that reports each test's fixture closure and markers (one collection:
seconds on an idle machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ENGINE_FIXTURES = {"docker_engine"}  # the one way a test reaches the engine (tests/conftest.py)

PLUGIN = """
import json, os

def pytest_collection_finish(session):
    out = {
        item.nodeid: {
            "fixtures": sorted(getattr(item, "fixturenames", ())),
            "markers": sorted({m.name for m in item.iter_markers()}),
        }
        for item in session.items
    }
    with open(os.environ["MODELPACK_COLLECTED"], "w") as f:
        json.dump(out, f)
"""


def collect(tmp_path: Path, *args: str) -> dict[str, dict[str, list[str]]]:
    (tmp_path / "collected_plugin.py").write_text(PLUGIN)
    out = tmp_path / "collected.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "MODELPACK_COLLECTED": str(out),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "collected_plugin", *args, str(TESTS)],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected: dict[str, dict[str, list[str]]] = json.loads(out.read_text())
    return collected


def test_every_test_that_reaches_the_engine_is_marked_engine(tmp_path: Path) -> None:
    everything = collect(tmp_path)
    reaching = {n for n, t in everything.items() if ENGINE_FIXTURES & set(t["fixtures"])}
    unmarked = sorted(n for n in reaching if "engine" not in everything[n]["markers"])
    assert unmarked == [], "mark these @pytest.mark.engine (they use the Docker engine):\n" + "\n".join(
        unmarked
    )
    assert len(reaching) >= 10  # the image, builder, runner and attestation tests

    # what `-m "not engine"` keeps: the tests without the marker, none of which reaches the engine
    without = {n for n, t in everything.items() if "engine" not in t["markers"]}
    assert without and not reaching & without
