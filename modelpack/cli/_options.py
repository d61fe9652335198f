"""Options shared by commands: the local store, JSON output, and how to reach registries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from modelpack.targets import Targets

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Local store (an OCI layout directory). "
        "Default: $MODELPACK_STORE or ~/.local/share/modelpack/store.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
CaFileOpt = Annotated[
    Path | None,
    typer.Option("--ca-file", help="Trust this CA bundle (PEM) for registry TLS.", show_default=False),
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


def open_targets(
    store: Path | None = None,
    ca_file: Path | None = None,
    insecure: bool = False,
    plain_http: bool | None = None,
) -> Targets:
    from modelpack.targets import Targets, TlsOptions  # lazy: keeps `--help` and local commands fast

    tls = TlsOptions(ca_file=str(ca_file) if ca_file else None, insecure=insecure, plain_http=plain_http)
    return Targets(tls=tls, store_path=store)
