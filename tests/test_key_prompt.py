"""An encrypted key on a terminal: every command that signs (sign, build --key, test --key) asks for its
password there when $MODELPACK_KEY_PASSWORD is not set, and never echoes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.terminal import on_terminal

from modelpack.trust import keys

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "iris-onnx"


def _env(store: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELPACK_KEY_PASSWORD"}
    return {**env, "MODELPACK_STORE": str(store), **more}


@pytest.mark.engine
def test_build_and_sign_ask_for_the_password_on_a_terminal(
    tmp_path: Path, docker_engine
) -> None:  # type: ignore[no-untyped-def]
    files = keys.generate(tmp_path / "release", b"open sesame")
    env = _env(tmp_path / "store", MODELPACK_BASE_IMAGE=docker_engine.base_ref)
    prompt = f"password for {files.private}".encode()

    built = on_terminal(["build", str(EXAMPLE), "--key", str(files.private)], env, {prompt: b"open sesame"})
    assert built.status == 0, built.output
    assert "password for" in built.output and "open sesame" not in built.output  # asked, not echoed

    sign = ["sign", "iris-onnx:1.0.0", "--key", str(files.private)]
    signed = on_terminal(sign, env, {prompt: b"open sesame"})
    assert signed.status == 0, signed.output
    assert "signed iris-onnx:1.0.0" in signed.output and "open sesame" not in signed.output

    wrong = on_terminal(sign, env, {prompt: b"nope"})
    # a key fault: exit 1, one line, the typed password nowhere
    assert wrong.status == 1 and "wrong password" in wrong.output and "nope" not in wrong.output
