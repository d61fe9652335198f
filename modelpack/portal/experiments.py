"""The experiment pages: an experiment's runs (the `runs ls` table and filters, each numeric param
against the sorted metric, the curves of the shown runs overlaid) and one run's page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup

from modelpack.errors import ModelpackError
from modelpack.portal import charts
from modelpack.portal.data import Query, Source

MAX_SCATTERS = 6
MAX_OVERLAID = 5  # runs whose curves share one chart: more is a tangle


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def experiment(src: Source, render: Callable[..., str], slug: str, q: Query) -> str:
    repo = src.repo_of[slug]
    error = None
    try:
        listing = src.runs(repo, q)
    except ModelpackError as e:  # a bad --where is the user's to fix: show it, and every run
        error, listing, q = str(e), src.runs(repo), Query()
    runs: Sequence[dict[str, Any]] = listing["runs"]
    metrics = sorted({m for r in runs for m in r["metrics"]})
    params = sorted({k for r in runs for k, v in r["params"].items() if _numeric(v)})
    varying = [k for k in params if len({repr(r["params"].get(k)) for r in runs}) > 1]
    target = q.sort or (metrics[0] if metrics else None)
    scatters: list[Markup] = []
    if target is not None:
        for p in varying[:MAX_SCATTERS]:
            points = [(float(r["params"][p]), r["metrics"][target], r["id"]) for r in runs
                      if _numeric(r["params"].get(p)) and target in r["metrics"]]  # fmt: skip
            scatters.append(charts.scatter_chart(f"{target} by {p}", p, target, points))
    shown = [r for r in runs if r["status"] != "running"][:MAX_OVERLAID]
    curves = _overlaid(src, repo, shown)
    return render(
        "runs.html", 2, repo=repo, slug=slug, runs=runs, total=listing["total"], metrics=metrics,
        params=varying, q=q, error=error, notes=listing.get("notes", ()), scatters=scatters, curves=curves,
    )  # fmt: skip


def _overlaid(src: Source, repo: str, runs: Sequence[dict[str, Any]]) -> list[Markup]:
    docs = []
    for r in runs:
        try:
            docs.append((r["id"], src.run(repo, r["id"])["curves"]))
        except ModelpackError:
            continue
    columns = sorted({c for _, d in docs if d for c in d["columns"]})
    out = []
    for column in columns:
        series = [(run_id, _series(d, column)) for run_id, d in docs if d and column in d["columns"]]
        out.append(charts.curves_chart(column, "step", series))
    return out


def _series(doc: dict[str, Any], column: str) -> list[tuple[float, float]]:
    i = doc["columns"].index(column) + 1
    return [(float(row[0]), float(row[i])) for row in doc["rows"] if row[i] is not None]


def run(src: Source, render: Callable[..., str], slug: str, run_id: str) -> str:
    repo = src.repo_of[slug]
    shown = src.run(repo, run_id)
    rec, doc = shown["record"], shown["curves"]
    curves = [
        charts.curves_chart(c, "step", [(run_id, _series(doc, c))]) for c in (doc or {}).get("columns", [])
    ]
    system = shown.get("system") or {}
    samples = [
        charts.curves_chart(c, "seconds", [(run_id, _series(system, c))])
        for c in system.get("columns", [])
        if any(row[system["columns"].index(c) + 1] is not None for row in system.get("rows", []))
    ]
    return render("run.html", 3, repo=repo, slug=slug, shown=shown, rec=rec, curves=curves, samples=samples,
                  releases=_releases(src, repo, run_id))  # fmt: skip


def _releases(src: Source, experiment: str, run_id: str) -> list[dict[str, str]]:
    """The releases of the portal's model repositories whose record names this run (`build --run`)."""
    out = []
    for repo, cat in src.catalogs().items():
        if repo == experiment or isinstance(cat, str):
            continue
        for e in cat["versions"]:
            link = (e.get("record") or {}).get("run") or {}
            if link.get("id") == run_id and not e.get("alias"):
                out.append({"repo": repo, "slug": src.slug_of[repo], "tag": e["tag"]})
    return out


def run_link(src: Source, links: Any) -> Callable[[dict[str, Any]], str | None]:
    """Where a release's `record.run` links: its run's page, when the portal shows that experiment."""

    def link(run: dict[str, Any]) -> str | None:
        repo, sep, _ = str(run.get("ref", "")).rpartition(":run-")
        slug = src.slug_of.get(repo) if sep else None
        return str(links.run(slug, str(run["id"]))) if slug is not None else None

    return link
