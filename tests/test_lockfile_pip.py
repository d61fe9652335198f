"""`Lock.as_requirements()` is what the image build hands to pip: check that real pip accepts it, offline."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modelpack.bundle.lockfile import load_lock


def make_wheel(directory: Path, name: str, version: str) -> Path:
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    path = directory / f"{module}-{version}-py3-none-any.whl"
    files = {
        f"{module}/__init__.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: modelpack-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for p, text in {**files, f"{dist}/RECORD": record}.items():
            zf.writestr(p, text)
    return path


def pip_download(requirements: Path, wheels: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-index", "--find-links", str(wheels),
         "--require-hashes", "--no-deps", "-r", str(requirements), "-d", str(dest)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_pip_accepts_and_verifies_the_requirements_we_write(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    hashes = {}
    for name in ("mp-fixture-a", "mp-fixture-b"):
        wheel = make_wheel(wheels, name, "1.0.0")
        hashes[name] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    # a uv.lock, so the text pip reads is entirely ours, not a copy of the input
    uv_lock = "version = 1\n" + "".join(
        f'\n[[package]]\nname = "{n}"\nversion = "1.0.0"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
        f'wheels = [{{ url = "https://example.invalid/{n}.whl", hash = "sha256:{h}" }}]\n'
        for n, h in hashes.items()
    )
    (tmp_path / "uv.lock").write_text(uv_lock)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(load_lock(tmp_path / "uv.lock").as_requirements())

    done = pip_download(requirements, wheels, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "mp_fixture_a-1.0.0-py3-none-any.whl",
        "mp_fixture_b-1.0.0-py3-none-any.whl",
    ]

    requirements.write_text(requirements.read_text().replace(hashes["mp-fixture-b"], "0" * 64))
    refused = pip_download(requirements, wheels, tmp_path / "out2")
    assert refused.returncode != 0 and "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stderr
