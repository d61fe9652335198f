"""`modelpack keygen`, `sign` and `verify`: signing keys, signatures on a release, and the chain of checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import PASSWORD_ENV, Access, JsonOpt, LocalOpt, access_options, key_password
from modelpack.errors import UsageError, VerificationError

if TYPE_CHECKING:
    from modelpack.api import VerifyResult

RefArg = Annotated[
    str, typer.Argument(metavar="REF", help="The release: HOST/REPO:VERSION, oci:PATH:TAG, NAME:VERSION.")
]


@app.command()
def keygen(
    prefix: Annotated[Path, typer.Argument(metavar="PATH", help="Writes PATH.key and PATH.pub.")],
    encrypt: Annotated[
        bool, typer.Option("--encrypt", help=f"Encrypt PATH.key with ${PASSWORD_ENV}, or ask on a terminal.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make an ECDSA P-256 signing key: PATH.key (PEM, mode 0600) and PATH.pub (give this one away).

    Keep PATH.key secret; in CI store its contents as a secret and pass --key env://NAME to sign.

    Examples:

      modelpack keygen release

      MODELPACK_KEY_PASSWORD=... modelpack keygen keys/ci --encrypt
    """
    from modelpack import api

    result = api.keygen(prefix, _new_password() if encrypt else None)
    if as_json:
        return _output.emit_json(result.to_json())
    _output.echo(f"wrote {result.private_key} (secret) and {result.public_key}; keyid {result.keyid[:12]}")


@app.command()
@access_options
def sign(
    reference: RefArg,
    key: Annotated[
        str, typer.Option("--key", metavar="KEY", help="Private key: a path, env://NAME, or - for stdin.")
    ],
    no_model: Annotated[bool, typer.Option("--no-model", help="Sign only the release digest.")] = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Sign a release: a cosign-format signature over its digest (a Sigstore bundle referrer of the index)
    and an OpenSSF model signature over its files (a referrer of the bundle; `unpack` writes it as
    DIR/model.sig). An encrypted key takes its password from $MODELPACK_KEY_PASSWORD.

    Examples:

      modelpack sign ghcr.io/acme/iris:1.4.0 --key release.key

      modelpack sign ghcr.io/acme/iris:1.4.0 --key env://MODELPACK_SIGNING_KEY
    """
    from modelpack import api

    password = key_password(key)
    with access.targets() as targets:
        result = api.sign(targets, reference, key, model_signature=not no_model, password=password)
    if as_json:
        return _output.emit_json(result.to_json())
    _output.echo(f"signed {result.reference} ({result.digest}) with key {result.keyid[:12]}")
    if result.signed.model_signature is not None:
        _output.echo(f"model signature over {_output.count(result.signed.files, 'file')} of {result.bundle}")


@app.command()
@access_options
def verify(
    reference: RefArg,
    key: Annotated[
        list[str] | None,
        typer.Option("--key", metavar="PUB", help="A trusted public key (path or env://NAME); repeatable."),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            metavar="KINDS",
            help="Only these links, comma-separated: signature, model-signature, test, provenance, sbom.",
            show_default=False,
        ),
    ] = None,
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    *,
    access: Access,
) -> None:
    """Check every signature and attestation on a release and print the chain (release signature, model
    signature, test evidence, provenance, SBOM); exit 1 naming the first failure, a missing link included.
    Without --key, signatures are listed but count as unchecked (a failure).

    Examples:

      modelpack verify ghcr.io/acme/iris:1.4.0 --key release.pub

      modelpack verify ghcr.io/acme/iris:1.4.0 --key release.pub --key ci.pub --json

      modelpack verify ghcr.io/acme/iris:1.4.0 --key release.pub --only signature,model-signature
    """
    from modelpack import api

    kinds = [k.strip() for k in only.split(",") if k.strip()] if only else []
    with access.targets() as targets:
        result = api.verify(targets, reference, key or (), local=local, only=kinds)
    if as_json:
        _output.emit_json(result.to_json())
    else:
        _chain(result)
    if not result.ok:
        first = result.failures[0] if result.failures else None
        raise VerificationError(f"{result.reference}: {first.detail if first else 'nothing to check'}")


def _chain(result: VerifyResult) -> None:
    _output.echo(f"{result.reference} ({result.digest})")
    for c in result.checks:
        _output.echo(f"  {'ok  ' if c.ok else 'FAIL'}  {c.kind:<16} {c.detail}")


def _new_password() -> bytes:
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV].encode()
    if not sys.stdin.isatty():
        raise UsageError(f"--encrypt needs a password: set {PASSWORD_ENV} (no terminal to ask on)")
    return str(typer.prompt("password for the new key", hide_input=True, confirmation_prompt=True)).encode()
