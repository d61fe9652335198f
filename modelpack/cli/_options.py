"""Options shared by commands: JSON output, `--local`, and one set for where releases live.

`@access_options` adds `--store`, `--ca-file`, `--insecure` and `--plain-http/--tls` to a command and
hands them to it as one `access: Access`, so every command spells, documents and applies them the same.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from modelpack.targets import Targets

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        metavar="DIR",
        help="Local store (an OCI layout directory). "
        "Default: $MODELPACK_STORE or ~/.local/share/modelpack/store.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
LocalOpt = Annotated[
    bool,
    typer.Option(
        "--local", help="Read a registry name from the local store's pulled copy (works with no network)."
    ),
]
CaFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-file", metavar="PEM", help="Trust this CA bundle (PEM) for registry TLS.", show_default=False
    ),
]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="Do not verify registry TLS certificates (unsafe).")
]
PlainHttpOpt = Annotated[
    bool | None,
    typer.Option(
        "--plain-http/--tls",
        help="Force plain HTTP or TLS. Default: plain HTTP for loopback registries only, as docker does.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Access:
    """Where releases live and how registries are reached, as the shared options gave it."""

    store: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False
    plain_http: bool | None = None

    def targets(self) -> Targets:
        from modelpack.targets import Targets, TlsOptions  # lazy: keeps `--help` and local commands fast

        tls = TlsOptions(
            ca_file=str(self.ca_file) if self.ca_file else None,
            insecure=self.insecure,
            plain_http=self.plain_http,
        )
        return Targets(tls=tls, store_path=self.store)


_SHARED = (
    ("store", StoreOpt, None),
    ("ca_file", CaFileOpt, None),
    ("insecure", InsecureOpt, False),
    ("plain_http", PlainHttpOpt, None),
)


def access_options(fn: F) -> F:
    """Give `fn(..., access: Access)` the shared options (typer reads the rewritten signature)."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "access"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in _SHARED
    ]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        access = Access(**{name: kwargs.pop(name) for name, _, _ in _SHARED})
        return fn(*args, access=access, **kwargs)

    command.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    return command  # type: ignore[return-value]


def open_targets(
    store: Path | None = None,
    ca_file: Path | None = None,
    insecure: bool = False,
    plain_http: bool | None = None,
) -> Targets:
    return Access(store, ca_file, insecure, plain_http).targets()


# trust/keys.py reads the same variable; spelled here so `--help` does not import cryptography
PASSWORD_ENV = "MODELPACK_KEY_PASSWORD"


def key_password(key: str) -> bytes | None:
    """Asks on a terminal for the password of an encrypted key file when $MODELPACK_KEY_PASSWORD is unset;
    otherwise leaves it to the key loader (which reads the variable or says it is needed)."""
    if os.environ.get(PASSWORD_ENV) or key == "-" or key.startswith("env://") or not sys.stdin.isatty():
        return None
    try:
        with open(key, "rb") as f:
            encrypted = b"ENCRYPTED PRIVATE KEY" in f.read(64 * 1024)
    except OSError:
        return None  # the loader says what is wrong with the path
    if not encrypted:
        return None
    return str(typer.prompt(f"password for {key}", hide_input=True)).encode()
