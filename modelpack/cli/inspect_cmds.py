"""`modelpack inspect`, `diff`, `pull`, `unpack` and `ls`: reading releases, local or remote."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from modelpack import unpack as unpacking
from modelpack.cli import _output
from modelpack.cli._app import app
from modelpack.cli._options import CaFileOpt, InsecureOpt, JsonOpt, PlainHttpOpt, StoreOpt, open_targets
from modelpack.errors import NotFoundError, UsageError
from modelpack.oci.layout import LayoutStore
from modelpack.oci.target import Target
from modelpack.registry.reference import parse_reference
from modelpack.release import query
from modelpack.release.diff import RecordDiff, diff_records, flatten
from modelpack.release.view import ReleaseView, load_release
from modelpack.targets import Resolved, Targets

_BARE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _open(targets: Targets, text: str) -> tuple[Resolved, str]:
    resolved = targets.open(text)
    if resolved.ref is None:
        raise UsageError(f"{text!r} names no version", hint=f"add a tag, e.g. {text}:1.0.0")
    return resolved, resolved.ref


def _sibling(a: Resolved, b_text: str) -> str:
    """`diff REPO:1.0 1.1`: a bare tag as B means that tag in A's repository."""
    if not _BARE_TAG.match(b_text):
        return b_text
    if a.reference is not None:
        return str(a.reference.with_tag(b_text))
    name = a.display.rsplit(":", 1)[0]  # a local store tag is name:version
    return f"{name}:{b_text}"


@app.command()
def inspect(
    reference: Annotated[str, typer.Argument(help="A release: NAME:VERSION, HOST/REPO:TAG or oci:PATH:TAG.")],
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a release's record, layers and sizes, from its manifests alone (no blob is pulled).

    Example: modelpack inspect ghcr.io/acme/iris:1.4.0
    """
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        resolved, ref = _open(targets, reference)
        view = load_release(resolved.target, ref, where=resolved.display)
    if as_json:
        _output.emit_json({"reference": resolved.display, **view.to_json()})
        return
    _render_release(resolved.display, view)


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="The older release.")],
    b: Annotated[str, typer.Argument(help="The newer release, or just its tag in A's repository.")],
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two releases: metrics, data and model hashes, packages, params, commit.

    Example: modelpack diff ghcr.io/acme/iris:1.3.0 1.4.0
    """
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        ra, ref_a = _open(targets, a)
        rb, ref_b = _open(targets, _sibling(ra, b))
        old = load_release(ra.target, ref_a, layers=False, where=ra.display)
        new = load_release(rb.target, ref_b, layers=False, where=rb.display)
    result = diff_records(old.record, new.record)
    if as_json:
        _output.emit_json({"a": ra.display, "b": rb.display, **result.to_json()})
        return
    _render_diff(ra.display, rb.display, result)


@app.command()
def pull(
    reference: Annotated[str, typer.Argument(help="HOST/REPO:TAG or oci:PATH:TAG.")],
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Also tag it so in the local store.")
    ] = None,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a release (index, image and bundle) into the local store, tagged with the reference.

    Example: modelpack pull ghcr.io/acme/iris:1.4.0 --tag iris:1.4.0
    """
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        resolved, ref = _open(targets, reference)
        if resolved.reference is None:  # a tag of the local store itself
            raise UsageError(f"{reference} is already in the local store {targets.store_path}")
        if resolved.reference is not None and resolved.reference.is_layout:
            # A layout path is no OCI ref.name; store it as the release names itself.
            record = load_release(resolved.target, ref, layers=False, where=resolved.display).record
            default = f"{record.name}:{record.version}"
        else:
            default = resolved.display
        with _output.progress_bars() as progress:
            result = unpacking.pull(resolved.target, ref, targets.store, [default, *(tag or [])], progress)
    if as_json:
        _output.emit_json(
            {
                "digest": result.copy.digest,
                "mediaType": result.copy.media_type,
                "tags": list(result.tags),
                "blobsCopied": result.copy.blobs_copied,
                "blobsSkipped": result.copy.blobs_skipped,
                "bytesCopied": result.copy.bytes_copied,
            }
        )
        return
    c = result.copy
    _output.info(
        f"pulled {resolved.display}: {c.blobs_copied} blobs ({c.bytes_copied:,} bytes) copied, "
        f"{c.blobs_skipped} already here; tagged {', '.join(result.tags)}"
    )
    typer.echo(c.digest)


@app.command()
def unpack(
    reference: Annotated[str, typer.Argument(help="A release: NAME:VERSION, HOST/REPO:TAG or oci:PATH:TAG.")],
    dest: Annotated[Path, typer.Argument(help="Folder to unpack into (created if missing).")],
    filter_: Annotated[
        str | None,
        typer.Option("--filter", help="Comma-separated kinds: model,code,datasets,docs (default: all)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a release's files into DEST (models/, code/, docs/, datasets/), every digest verified.

    Example: modelpack unpack ghcr.io/acme/iris:1.4.0 ./iris --filter model,code
    """
    kinds = unpacking.parse_filter(filter_)
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        resolved, ref = _open(targets, reference)
        with _output.progress_bars() as progress:
            result = unpacking.unpack(
                resolved.target,
                ref,
                dest,
                kinds=kinds,
                force=force,
                progress=progress,
                where=resolved.display,
            )
    if as_json:
        _output.emit_json(
            {
                "dest": str(result.dest),
                "digest": result.release.digest,
                "layers": [d.to_json() for d in result.layers],
                "files": list(result.files),
            }
        )
        return
    _output.info(
        f"unpacked {resolved.display}: {len(result.files)} files, {result.size:,} bytes into {result.dest}"
    )


@app.command("ls")
def ls_cmd(
    repository: Annotated[str, typer.Argument(help="HOST/REPO, oci:PATH, or a NAME in the local store.")],
    sort: Annotated[
        str | None, typer.Option("--sort", help="Order by this metric, best (highest) first.")
    ] = None,
    asc: Annotated[bool, typer.Option("--asc", help="With --sort: lowest first.")] = False,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="dataset=NAME or param=KEY=VALUE; repeat to require all."),
    ] = None,
    store: StoreOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a repository's versions; with --sort/--where/--json, read every version's record (manifests only).

    Example: modelpack ls ghcr.io/acme/iris --sort accuracy --where dataset=iris-test-v3
    """
    wheres = [query.Where.parse(w) for w in where or []]
    with open_targets(store, ca_file, insecure, plain_http) as targets:
        target, tags, prefix = _repository(targets, repository)
        tags = query.release_tags(tags)
        if not (sort or wheres or as_json):
            for t in tags:
                typer.echo(t)
            return
        versions = query.select(query.read_versions(target, tags, prefix=prefix), wheres, sort, asc)
    if as_json:
        _output.emit_json([_version_json(v) for v in versions])
        return
    if not versions:
        _output.info(f"no release in {repository} matches" if wheres else f"no releases in {repository}")
        return
    rows = []
    for v in versions:
        assert v.release is not None
        rec = v.release.record
        metrics = (
            [_metric_text(rec.metrics[sort].value, rec.metrics[sort].dataset) if sort in rec.metrics else "-"]
            if sort
            else [" ".join(f"{k}={m.value:g}" for k, m in sorted(rec.metrics.items()))]
        )
        note = f"-> {rec.version}" if v.alias else ""
        rows.append([v.tag, *metrics, rec.created, v.release.digest[:19], note])
    _output.table(["TAG", sort.upper() if sort else "METRICS", "CREATED", "DIGEST", ""], rows)


def _repository(targets: Targets, text: str) -> tuple[Target, list[str], str]:
    """(target, its tags, prefix making a listed tag a ref there): a registry repository, a layout, or
    the local store's tags NAME:* when NAME has no registry host."""
    if text.startswith("oci:"):
        ref = parse_reference(text)
        if ref.tag or ref.digest:
            raise UsageError(f"ls takes a layout, not a release: drop the tag from {text!r}")
        assert ref.layout_path is not None
        layout = LayoutStore(Path(ref.layout_path))
        if not layout.index_path.exists():
            raise NotFoundError(f"{ref.layout_path} is not an OCI layout (no index.json)")
        return layout, layout.list_tags(), ""
    first = text.split("/", 1)[0]
    has_host = "/" in text and ("." in first or ":" in first or first == "localhost")
    if not has_host and targets.store_path.exists():
        local = [t for t in targets.store.list_tags() if t.startswith(f"{text}:")]
        if local:
            return targets.store, [t[len(text) + 1 :] for t in local], f"{text}:"
    ref = parse_reference(text)
    if ref.tag or ref.digest:
        raise UsageError(f"ls takes a repository, not a release: drop the tag from {text!r}")
    repo = targets.repository(ref)
    return repo, repo.list_tags(), ""


def _version_json(v: query.Version) -> dict[str, Any]:
    assert v.release is not None
    rec = v.release.record
    return {
        "tag": v.tag,
        "version": rec.version,
        "alias": v.alias,
        "digest": v.release.digest,
        "created": rec.created,
        "metrics": {k: {"value": m.value, "dataset": m.dataset} for k, m in sorted(rec.metrics.items())},
        "params": dict(rec.params),
        "datasets": {d.name: d.sha256 for d in rec.datasets},
        "git": rec.git.to_json() if rec.git else None,
    }


def _metric_text(value: float, dataset: str | None) -> str:
    return f"{value:g}" + (f" ({dataset})" if dataset else "")


def _render_release(display: str, view: ReleaseView) -> None:
    rec = view.record
    out = _output.out
    out.print(f"{rec.name} {rec.version}")
    fields: list[tuple[str, str]] = [
        ("reference", display),
        ("digest", f"{view.digest} ({'index' if view.is_index else 'bundle manifest'})"),
    ]
    if view.is_index:
        fields.append(("bundle", view.bundle.digest))
        if view.image is not None:
            fields.append(("image", f"{view.image.digest} ({view.image.platform or 'no platform'})"))
    fields.append(("created", rec.created))
    if rec.git:
        g = rec.git
        extra = ", ".join(x for x in (g.branch, "dirty" if g.dirty else None) if x)
        fields.append(("git", g.commit + (f" ({extra})" if extra else "")))
    if view.total_size is not None:
        fields.append(("size", f"{view.total_size:,} bytes in {len(view.layers)} layers"))
    if rec.lock is not None:
        lk = rec.lock
        fields.append(("lock", f"{lk.path} ({lk.format}, python {lk.python or '?'}): {lk.count} packages"))
    gates = rec.tests.gates if rec.tests else ()
    fields.append(("gates", ", ".join(str(g) for g in gates) or "none"))
    for key, value in fields:
        typer.echo(f"  {key:<10} {value}")
    sections: list[tuple[str, list[str], list[list[Any]]]] = [
        (
            "LAYERS",
            ["KIND", "FILEPATH", "SIZE", "DIGEST"],
            [[x.kind, x.filepath or "", f"{x.size:,}", x.digest[:19]] for x in view.layers],
        ),
        (
            "METRICS",
            ["NAME", "VALUE", "DATASET"],
            [[k, f"{m.value:g}", m.dataset or ""] for k, m in sorted(rec.metrics.items())],
        ),
        ("PARAMS", ["KEY", "VALUE"], [[k, v] for k, v in sorted(flatten(rec.params).items())]),
        (
            "DATASETS",
            ["NAME", "SHA256", "SIZE", "FILES"],
            [[d.name, (d.sha256 or "-")[:19], f"{d.size:,}", d.files] for d in rec.datasets],
        ),
    ]
    for title, columns, rows in sections:
        if rows:
            out.print()
            _output.table(columns, rows, title=title)


def _render_diff(a: str, b: str, d: RecordDiff) -> None:
    out = _output.out
    out.print(f"{a} -> {b}")
    if d.unchanged:
        out.print("no differences in metrics, data, files, packages, params or commit")
        return
    metric_rows = []
    for m in d.metrics:
        if m.status == "same":
            continue
        change = ""
        if m.delta is not None:
            change = f"{m.delta:+g}" + (f" ({m.relative:+.1%})" if m.relative is not None else "")
        note = f"dataset {m.old_dataset} -> {m.new_dataset}" if m.dataset_changed else (m.new_dataset or "")
        metric_rows.append(
            [m.name, _num(m.old), _num(m.new), change, m.direction or m.status, note or m.old_dataset or ""]
        )
    sections = [
        ("METRICS", ["NAME", "A", "B", "CHANGE", "", "DATASET"], metric_rows),
        ("DATASETS", ["NAME", "", "A", "B"], _change_rows(d.datasets)),
        ("FILES", ["PATH", "", "A", "B"], _change_rows(d.files)),
        ("PACKAGES", ["NAME", "", "A", "B"], _change_rows(d.packages, short=False)),
        ("PARAMS", ["KEY", "", "A", "B"], _change_rows(d.params, short=False)),
    ]
    for title, columns, rows in sections:
        if rows:
            out.print()
            _output.table(columns, rows, title=title)
    for label, c in (("git commit", d.git), ("python", d.python)):
        if c is not None:
            out.print()
            out.print(f"{label}: {c.old or '-'} -> {c.new or '-'}")


def _change_rows(changes: Any, short: bool = True) -> list[list[Any]]:
    def cut(v: Any) -> str:
        if v is None:
            return "-"
        s = str(v)
        return s[:19] if short and s.startswith("sha256:") else s

    return [[c.key, c.status, cut(c.old), cut(c.new)] for c in changes]


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"
