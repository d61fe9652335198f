"""How results look to people: releases, diffs, version lists, histories, test reports.

Every value passes through `_output` (`clean`), which escapes control characters from registry content.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelpack.cli import _output

if TYPE_CHECKING:
    from modelpack.api._build import BuildResult
    from modelpack.api._deploy import DeployResult, EnvResult
    from modelpack.api._environments import HistoryResult, PolicyResult
    from modelpack.api._kubernetes import KubernetesResult
    from modelpack.api._read import InspectResult, LsResult
    from modelpack.deploy.stored import Step
    from modelpack.environment.move import MoveResult
    from modelpack.record.record import Record
    from modelpack.release.diff import RecordDiff
    from modelpack.release.measured import MeasuredDiff
    from modelpack.release.view import ReleaseView
    from modelpack.testing.evaluate import Evaluation
    from modelpack.testing.report import TestReport
    from modelpack.testing.testrun import TestOutcome


def metric_text(value: float, dataset: str | None, rec: Record | None = None) -> str:
    return f"{value:g}" + (f" ({dataset_label(rec, dataset)})" if dataset else "")


def dataset_label(rec: Record | None, name: str | None) -> str:
    """`iris-test@1a2b3c4d5e6f`: a dataset as a record used it, its version beside its name (two versions
    of one name are not the same evaluation)."""
    from modelpack.release.diff import dataset_version, short_version

    if not name:
        return ""
    version = dataset_version(rec, name) if rec is not None else None
    return f"{name}@{short_version(version)}" if version else name


def release(display: str, view: ReleaseView, extra: InspectResult | None = None) -> None:
    rec = view.record
    _output.echo(f"{rec.name} {rec.version}")
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
        notes = ", ".join(x for x in (g.branch, "dirty" if g.dirty else None) if x)
        fields.append(("git", g.commit + (f" ({notes})" if notes else "")))
    if view.total_size is not None:
        fields.append(
            ("size", f"bundle {view.total_size:,} bytes in {_output.count(len(view.layers), 'layer')}")
        )
    if extra is not None and extra.image_size is not None:
        fields.append(("image size", f"{extra.image_size:,} bytes (serving image, base included)"))
    if extra is not None:
        fields.append(("envs", ", ".join(extra.environments) or "none names it now"))
        newest = extra.reports[0] if extra.reports else None
        tested = (
            f"{'passed' if newest.passed else 'FAILED'} ({newest.runtime} runtime, {newest.created})"
            + (f"; {len(extra.reports)} reports" if len(extra.reports) > 1 else "")
            if newest
            else "no report attached"
        )
        fields.append(("tested", tested))
        if newest is not None and newest.measured:
            for source in ("measured", "fairness", "load"):
                shown = ", ".join(
                    f"{k.split('.', 1)[1]} {v:g}" for k, v in newest.measured if k.startswith(f"{source}.")
                )
                dataset = newest.evaluation_dataset
                on = f" (dataset {dataset[:19]})" if dataset and source == "measured" else ""
                if shown:
                    fields.append((source, shown + on))
        fields.append(("signed", _signed(extra)))
        fields.append(("attested", _attested(extra)))
    if rec.lock is not None:
        lk = rec.lock
        python = lk.python or (rec.serving.python if rec.serving else None) or "?"
        fields.append(
            ("lock", f"{lk.path} ({lk.format}, python {python}): {_output.count(lk.count, 'package')}")
        )
    gates = rec.tests.gates if rec.tests else ()
    fields.append(("gates", ", ".join(str(g) for g in gates) or "none"))
    if rec.history is not None:
        h = rec.history
        fields.append(("history", f"{h.path}: {_output.count(h.rows, 'row')} by {h.x}"))
    for key, value in fields:
        _output.echo(f"  {key:<10} {value}")
    sections: list[tuple[str, list[str], list[list[Any]]]] = [
        (
            "LAYERS",
            ["KIND", "FILEPATH", "SIZE", "DIGEST"],
            [[x.kind, x.filepath or "", f"{x.size:,}", x.digest[:19]] for x in view.layers],
        ),
        (
            "METRICS",
            ["NAME", "VALUE", "DATASET"],
            [[k, f"{m.value:g}", dataset_label(rec, m.dataset)] for k, m in sorted(rec.metrics.items())],
        ),
        ("TRAINING CURVES", ["METRIC", "POINTS", "FIRST", "LAST", "MIN", "MAX", "BEST"], _curve_rows(rec)),
        ("PARAMS", ["KEY", "VALUE"], [[k, v] for k, v in sorted(_flat(rec.params).items())]),
        (
            "DATASETS",
            ["NAME", "SHA256", "SIZE", "FILES"],
            [[d.name, (d.sha256 or "-")[:19], f"{d.size:,}", d.files] for d in rec.datasets],
        ),
    ]
    for title, columns, rows in sections:
        if rows:
            _output.echo()
            _output.table(columns, rows, title=title)


def _curve_rows(rec: Record) -> list[list[Any]]:
    """One row per history column; a point is `value @x`, best only where its direction is known."""
    if rec.history is None:
        return []

    def at(point: tuple[float, float] | None) -> str:
        return "-" if point is None else f"{point[1]:g} @{point[0]:g}"

    return [
        [c.name, c.count, at(c.first), at(c.last), at(c.min), at(c.max),
         at(c.best) + (f" ({c.better})" if c.better else "") if c.best else "-"]
        for c in rec.history.columns
    ]  # fmt: skip


def _signed(extra: InspectResult) -> str:
    if not extra.signatures:
        return "no signature attached"
    said = [f"{s.kind} by {(s.keyid or 'an unnamed key')[:12]}" for s in extra.signatures]
    return ", ".join(said) + " (not verified here: run `modelpack verify --key`)"


def diff(a: str, b: str, d: RecordDiff) -> None:
    _output.echo(f"{a} -> {b}")
    if d.version_changed:
        _output.echo(f"version: {d.old.name} {d.old.version} -> {d.new.name} {d.new.version}")
    if d.unchanged:
        _output.echo("no differences in metrics, data, files, packages, params or commit")
        return
    metric_rows = []
    for m in d.metrics:
        if m.status == "same":
            continue
        change = ""
        if m.delta is not None:
            change = f"{m.delta:+g}" + (f" ({m.relative:+.1%})" if m.relative is not None else "")
        old_ds, new_ds = dataset_label(d.old, m.old_dataset), dataset_label(d.new, m.new_dataset)
        note = f"dataset {old_ds or '-'} -> {new_ds or '-'}" if m.dataset_changed else (new_ds or old_ds)
        status = (m.direction or m.status) + (" REGRESSED" if m.regressed else "")
        if m.delta is not None and not m.comparable:
            status = "not comparable"  # another evaluation dataset: up or down says nothing of the model
        metric_rows.append([m.name, _num(m.old), _num(m.new), change, status, note])
    sections = [
        ("METRICS", ["NAME", "A", "B", "CHANGE", "STATUS", "DATASET"], metric_rows),
        ("DATASETS", ["NAME", "STATUS", "A", "B"], _change_rows(d.datasets)),
        ("FILES", ["PATH", "STATUS", "A", "B"], _change_rows(d.files)),
        ("PACKAGES", ["NAME", "STATUS", "A", "B"], _change_rows(d.packages, short=False)),
        ("PARAMS", ["KEY", "STATUS", "A", "B"], _change_rows(d.params, short=False)),
    ]
    for title, columns, rows in sections:
        if rows:
            _output.echo()
            _output.table(columns, rows, title=title)
    for label, c in (("git commit", d.git), ("python", d.python)):
        if c is not None:
            _output.echo()
            _output.echo(f"{label}: {c.old or '-'} -> {c.new or '-'}")


def measured_diff(m: MeasuredDiff | None) -> None:
    """The served model's numbers (attached reports), measured against measured."""
    if m is None or (m.old.report is None and m.new.report is None):
        return
    _output.echo()
    if not m.comparable:
        _output.echo(f"MEASURED: {m.why_not}")
        return
    rows = []
    for d in m.metrics:
        change = f"{d.delta:+g}" if d.delta is not None else ""
        rows.append([d.name, _num(d.old), _num(d.new), change, (d.direction or d.status)
                     + (" REGRESSED" if d.regressed else "")])  # fmt: skip
    title = f"MEASURED (dataset {(m.old.dataset or '')[:19]})"
    _output.table(["NAME", "A", "B", "CHANGE", "STATUS"], rows, title=title)


def _change_rows(changes: Any, short: bool = True) -> list[list[Any]]:
    def cut(v: Any) -> str:
        if v is None:
            return "-"
        s = str(v)
        return s[:19] if short and s.startswith("sha256:") else s

    return [[c.key, c.status, cut(c.old), cut(c.new)] for c in changes]


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _flat(params: Any) -> dict[str, Any]:
    from modelpack.record.record import flatten

    return flatten(params)


def versions(result: LsResult, repository: str, filtered: bool) -> None:
    from modelpack.record.record import flatten

    if not result.versions:
        _output.info(f"no release in {repository} matches" if filtered else f"no releases in {repository}")
        return
    sort = result.sort
    rows = []
    for v in result.versions:
        assert v.release is not None
        rec = v.release.record
        if sort:
            m = rec.metrics.get(sort)
            metrics = [metric_text(m.value, m.dataset, rec) if m is not None else "-"]
        else:
            metrics = [_metrics_text(rec)]
        note = f"-> {rec.version}" if v.alias else ""
        if v.tag in result.environments:
            note += " (environment)"
        if "archived" in v.labels:
            note += f" ({v.labels['archived'].describe()})"
        params = flatten(rec.params)
        shown = [_param_text(params[c]) if c in params else "-" for c in result.columns]
        rows.append([v.tag, *metrics, *shown, rec.created, v.release.digest[:19], note])
    heads = [c.upper() for c in result.columns]
    _output.table(["TAG", sort.upper() if sort else "METRICS", *heads, "CREATED", "DIGEST", ""], rows)


def _metrics_text(rec: Record) -> str:
    """`accuracy=0.97 f1=0.96 (iris-test@1a2b3c4d5e6f)`: metrics grouped by the dataset measured on."""
    groups: dict[str, list[str]] = {}
    for k, m in sorted(rec.metrics.items()):
        groups.setdefault(dataset_label(rec, m.dataset), []).append(f"{k}={m.value:g}")
    return " ".join(" ".join(vals) + (f" ({label})" if label else "") for label, vals in groups.items())


def _param_text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def short(digest: str | None) -> str:
    return digest.split(":", 1)[-1][:12] if digest else "-"


def move(result: MoveResult) -> None:
    for note in result.notes:
        _output.info(note)
    e = result.event
    if not result.changed and not result.dry_run:
        return
    verb = "would move" if result.dry_run else "moved"
    _output.info(
        f"{verb} {result.reference}: {short(e.from_digest)} -> {short(e.to_digest)} "
        f"({e.action} of {e.version})"
    )
    if not result.dry_run:
        _output.echo(e.to_digest)


def history(result: HistoryResult, env: str) -> None:
    if not result.entries:
        _output.info(f"no recorded events for {result.reference} (it names {short(result.current)})")
        return
    rows = []
    for entry in result.entries:
        e = entry.event
        lost = " UNVERIFIED" if e.digest in result.unverified else " SUPERSEDED"
        action = f"canary {e.weight}%" if e.action == "canary" else e.action
        status = action + (" (forced)" if e.forced else "") + ("" if entry.in_effect else lost)
        when = e.when[:19].replace("T", " ")
        arrow = f"{short(e.from_digest)} -> {short(e.to_digest)}"
        # the built-in test rule and a policy's test requirement are two checks of one kind: said once
        said = dict.fromkeys(f"{c.kind}:{'ok' if c.ok else 'MISSING'}" for c in e.evidence)
        checked = " ".join(said) or "-"
        rows.append(["*" if entry.current else "", when, status, e.version, arrow, e.who, checked, e.reason])
    _output.table(["", "WHEN (UTC)", "ACTION", "VERSION", "FROM -> TO", "WHO", "CHECKED", "REASON"], rows)
    if result.moved_outside:
        _output.info(
            f"note: {env} names {short(result.current)}, which no recorded event put there (moved outside "
            "modelpack)"
        )
    if result.steps:
        _steps(result.steps, title="deployment steps (newest first):")


def policy(result: PolicyResult) -> None:
    p = result.policy
    if p is None:
        _output.info(f"{result.reference} has no policy: promote needs a passing test report (or --force)")
        return
    verb = "set" if result.written else "policy of"
    when = p.created[:19].replace("T", " ")
    if p.signer:
        by = f"signed by the owner key {p.signer[:12]}"
    elif p.claimed_signer:
        by = f"claims the key {p.claimed_signer[:12]}, not checked (give the owner's key: --policy-key)"
    else:
        by = "unsigned: anyone with push rights could have written it"
    _output.info(f"{verb} {result.reference}: {by}; says it was set by {p.who} at {when} UTC")
    rows = []
    for r in p.requirements:
        keys = ", ".join(k.keyid[:12] for k in r.public_keys()) or "-"
        rows.append([r.kind, r.runtime or "-", keys, r.until or "-"])
    _output.table(["REQUIRES", "RUNTIME", "KEY", "TRUSTED UNTIL"], rows)
    if result.written and p.digest:
        _output.echo(p.digest)


def built(result: BuildResult) -> None:
    bundle = result.bundle
    size = sum(d.size for d in bundle.layers)
    what = "bundle + serving image" if result.image else "bundle"
    layers = _output.count(len(bundle.layers), "layer")
    _output.info(f"built {result.tag} ({what}; bundle {layers}, {size:,} bytes)")
    _output.info(f"created {bundle.record.created} from {bundle.created_from}")
    if result.attestations:
        signers = [(d.annotations or {}).get("dev.modelpack.signer") for d in result.attestations]
        signer = next((s for s in signers if s), None)
        how = f"signed by {signer[:12]}" if signer else "unsigned: pass --key to sign"
        _output.info(f"attached SLSA provenance ({how}) and a CycloneDX SBOM to the index")
    _output.echo(result.digest)


def tested(outcome: TestOutcome, as_json: bool) -> None:
    r = outcome.report
    if as_json:
        return _output.emit_json(outcome.to_json())
    report(r)
    _output.info(outcome.attach_note)
    if r.passed:
        _output.info(
            f"all {_output.count(len(r.cases), 'case')} and {_output.count(len(r.gates), 'gate')} passed"
        )


def report(r: TestReport) -> None:
    rows: list[tuple[str, str, str]] = []
    for c in r.cases:
        rows.append((f"case {c.name}", "pass" if c.passed else "FAIL", "; ".join(c.problems)))
    for g in r.gates:
        rows.append((f"gate {g.gate}", "pass" if g.passed else "FAIL", g.detail))
    title = f"{r.reference} ({r.release.digest[:19]}, {r.runtime} runtime)"
    _output.table(("CHECK", "RESULT", "DETAIL"), rows, title=title)
    _output.info(f"runtime: {r.runtime} ({r.runtime_note})")
    if r.latency is not None:
        lat = r.latency
        _output.info(
            f"latency over {lat.requests} requests: p50 {lat.p50_ms:.2f} ms, p95 {lat.p95_ms:.2f} ms, "
            f"p99 {lat.p99_ms:.2f} ms"
        )
    if r.evaluation is not None:
        evaluation(r.evaluation)
    if r.load is not None:
        ld = r.load
        memory = f", peak memory {ld.peak_memory_mb:.1f} MB" if ld.peak_memory_mb is not None else ""
        _output.info(
            f"load: {ld.connections} connections for {ld.duration_s:.1f} s: {ld.requests} requests, "
            f"{ld.throughput_rps:.1f} req/s, p50 {ld.p50_ms:.2f} ms, p95 {ld.p95_ms:.2f} ms, "
            f"p99 {ld.p99_ms:.2f} ms, error rate {ld.error_rate:.2%}{memory}"
        )


def evaluation(e: Evaluation) -> None:
    m, d = e.measurement, e.dataset
    where = f"{d.name} {d.version} ({d.digest[:19]}, {d.file}, {m.rows} rows)"
    rows = [(k, f"{v:.4f}", next((f"{c.recorded:.4f}" for c in e.claims if c.metric == k), ""))
            for k, v in m.metrics.items()]  # fmt: skip
    _output.table(("METRIC", "MEASURED", "RECORDED"), rows, title=f"measured on {where}")
    for line in e.flagged():
        _output.info(f"gap: {line}")
    if m.slices:
        names = list(m.metrics)
        _output.table(
            ("SLICE", "ROWS", *names),
            [
                (
                    f"{s.column}={s.value}",
                    str(s.rows),
                    *(f"{s.metrics.get(n, float('nan')):.4f}" for n in names),
                )
                for s in m.slices
            ],
            title="per slice",
        )
    for k, v in m.fairness.items():
        _output.info(f"fairness: {k} {v:.4f}")
    for note in m.notes:
        _output.info(f"note: {note}")


def _attested(extra: InspectResult) -> str:
    """The newest of each attestation kind, as listed (claims; `verify` checks them)."""
    newest: dict[str, str] = {}
    for a in extra.attestations:  # newest first within a kind
        if a.kind not in newest:
            signed = f" (signed {a.signer[:12]})" if a.signer else " (unsigned)"
            newest[a.kind] = f"{a.kind} {a.digest[:19]}{signed if a.kind != 'sbom' else ''}"
    return "; ".join(newest[k] for k in ("provenance", "sbom", "test") if k in newest) or "nothing attached"


def env_spec(result: EnvResult) -> None:
    s = result.spec
    if result.written:
        _output.info(
            f"set the deployment spec of {result.reference}, by {s.who} at "
            f"{s.created[:19].replace('T', ' ')} UTC"
        )
    elif not result.stored:
        _output.info(f"{result.reference} has no deployment spec: the defaults apply")
    steps = ",".join(str(x) for x in s.canary_steps)
    rows = [
        ["target", s.target],
        ["strategy", s.strategy],
        ["canary steps", f"{steps} (pause {s.pause_s:g} s)"],
        ["keep warm", f"{s.keep_warm_s:g} s"],
        ["proxy", f"{s.address}:{s.port} on network {s.network} ({s.proxy_image or 'default image'})"],
        ["ready timeout", f"{s.ready_timeout_s:g} s (drain {s.drain_s:g} s)"],
        [
            "analysis",
            f"error rate <= stable + {s.bounds.max_error_rate_increase:g}, p99 <= stable x "
            f"{s.bounds.max_p99_ratio:g} + {s.bounds.p99_slack_s * 1000:g} ms, "
            f"after {s.bounds.min_requests} requests",
        ],
    ]
    _output.table(["SPEC", "VALUE"], rows)
    st = result.state
    if st is not None:
        if st.stable is None:
            _output.info(f"{st.env} names no release")
        else:
            running = ", ".join(f"{w}% {short(d)}" for d, w in st.weights().items())
            canary = f"; canary {st.canary.version} at {st.canary.weight}%" if st.canary else ""
            _output.info(f"{st.env} names {st.stable_version or short(st.stable)} ({running}){canary}")
    if result.steps:
        _steps(result.steps)
    if result.written and s.digest:
        _output.echo(s.digest)


def _steps(steps: tuple[Step, ...], title: str | None = None) -> None:
    rows = [
        [
            x.when[:19].replace("T", " "),
            x.action,
            ", ".join(f"{w}% {short(d)}" for d, w in x.weights.items()),
            x.who,
            x.detail,
        ]
        for x in steps
    ]
    _output.table(["WHEN (UTC)", "STEP", "SHARES", "WHO", "DETAIL"], rows, title=title)


def deployed(result: DeployResult) -> None:
    for note in result.notes:
        _output.info(note)
    shares = ", ".join(f"{w}% to {short(d)}" for d, w in result.weights.items())
    verb = "deployed" if result.changed else "already running"
    _output.info(f"{verb} {result.reference} on {result.host}: http://127.0.0.1:{result.port} sends {shares}")
    _output.echo(result.state.stable or "")


def kubernetes(result: KubernetesResult) -> None:
    running = f"{result.stable_version} ({short(result.stable)})"
    if result.canary is not None:
        running += f", canary {result.canary_version} ({short(result.canary)}) at {result.weight}%"
    _output.info(f"{result.env} runs {running}")
    _output.info(f"wrote {_output.count(len(result.files), 'file')} under {result.directory}:")
    for f in result.files:
        _output.echo(f"  {f}")
    if result.bundle is not None:
        _output.info(f"pushed the deployment bundle {result.bundle} (tag {result.bundle_tag})")
    if result.apply_command is not None:
        _output.info("applied: " + " ".join(result.apply_command))
        if result.applied:
            _output.echo(result.applied.rstrip("\n"))
    else:
        _output.info(f"not applied: a GitOps tool applies overlays/{result.env} (or run with --apply)")
