"""Pages: one function per page, from the data source's JSON to HTML through jinja2 (autoescape on).

Links are relative (`root` climbs back to the site's top), so the same pages work served and exported;
`Links` says where a sorted table or a chosen metric lives: a query string on the server, a file of its
own in an export (which has no server to sort for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from packaging.version import InvalidVersion
from packaging.version import Version as PV

from modelpack.errors import ModelpackError, NotFoundError
from modelpack.portal import charts, datasets, experiments
from modelpack.portal.charts import Point
from modelpack.portal.data import Query, Source
from modelpack.text import clean

LATENCY = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
# No script runs on any page: the served pages get it as a header (with frame-ancestors, which a meta tag
# cannot carry), an export as a meta tag, since a static host sets no header of ours.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'"
)


@dataclass(frozen=True)
class Links:
    static: bool = False  # an export: sorted tables and metric choices are files of their own

    def repo(self, slug: str, q: Query = Query(), metrics: Sequence[str] = ()) -> str:
        if self.static:
            if q.sort is None:
                return f"r/{slug}/index.html"
            n = list(metrics).index(q.sort) if q.sort in metrics else 0
            return f"r/{slug}/sort-{n}{'-asc' if q.asc else ''}.html"
        args: list[tuple[str, str]] = []
        if q.sort:
            args.append(("sort", q.sort))
        if q.asc:
            args.append(("asc", "1"))
        args += [("where", w) for w in q.where]
        return f"r/{slug}/index.html" + (f"?{urlencode(args)}" if args else "")

    def version(self, slug: str, tag: str) -> str:
        return f"r/{slug}/v/{quote(tag)}.html"

    def compare(self, slug: str, a: str, b: str) -> str:
        return f"r/{slug}/compare/{quote(a)}/{quote(b)}.html"

    def env(self, slug: str, env: str, metric: str | None = None, metrics: Sequence[str] = ()) -> str:
        if metric is None:
            return f"r/{slug}/env/{quote(env)}.html"
        if self.static:
            return f"r/{slug}/env/{quote(env)}-m{list(metrics).index(metric)}.html"
        return f"r/{slug}/env/{quote(env)}.html?{urlencode({'metric': metric})}"

    def lineage(self, slug: str) -> str:
        return f"r/{slug}/lineage.html"

    def runs(self, slug: str, q: Query = Query()) -> str:
        args = [("sort", q.sort)] if q.sort else []
        args += [("where", w) for w in q.where]
        return f"r/{slug}/runs.html" + (f"?{urlencode(args)}" if args else "")

    def run(self, slug: str, run_id: str) -> str:
        return f"r/{slug}/run/{quote(run_id)}.html"

    def dataset(self, slug: str, digest: str) -> str:
        return f"r/{slug}/d/{datasets.file_name(digest)}.html"


def _finalize(value: Any) -> Any:
    """Every `{{ }}` of every template: terminal escapes made visible before HTML escaping."""
    if isinstance(value, Markup) or value is None:
        return "" if value is None else value
    return clean(value)


def dataset_label(record: Mapping[str, Any], name: str | None) -> str:
    """`iris-test@1a2b3c4d5e6f`: the dataset a record used, its version (artifact digest, else the files'
    hash) beside its name, so V2 and V3 of one name never read alike."""
    if not name:
        return ""
    entry = next((d for d in record.get("datasets") or () if d.get("name") == name), None)
    version = (entry.get("digest") or entry.get("sha256")) if entry else None
    return f"{name}@{str(version).split(':', 1)[-1][:12]}" if version else name


_ENV = Environment(
    loader=PackageLoader("modelpack.portal", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    finalize=_finalize,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals["ds"] = dataset_label


class Pages:
    def __init__(self, source: Source, links: Links = Links()) -> None:
        self.src = source
        self.links = links

    def _render(self, name: str, depth: int, **ctx: Any) -> str:
        root = "../" * depth
        run_link = experiments.run_link(self.src, self.links)
        return _ENV.get_template(name).render(
            root=root, links=self.links, dataset_link=self.dataset_link, run_link=run_link, csp=CSP, **ctx
        )

    def dataset_link(self, entry: dict[str, Any]) -> str | None:
        """Where a model's dataset entry links (relative to the site's top), or None: show its ref."""
        found = datasets.linked(entry, self.src.slug_of)
        return self.links.dataset(*found) if found is not None else None

    def dataset(self, slug: str, digest: str) -> str:
        repo = self.src.repo_of[slug]
        ds = self.src.dataset(repo, digest)
        stat_paths = {st["path"] for st in ds["record"]["stats"]}
        return self._render("dataset.html", 3, repo=repo, slug=slug, ds=ds, stat_paths=stat_paths)

    def index(self) -> str:
        repos: list[dict[str, Any]] = []
        data: list[dict[str, Any]] = []
        experiments: list[dict[str, Any]] = []
        for repo, cat in self.src.catalogs().items():
            if isinstance(cat, str):
                repos.append({"name": repo, "slug": self.src.slug_of[repo], "error": cat})
                continue
            if not cat["versions"]:  # no model release: perhaps a dataset repository, or an experiment
                try:
                    found = self.src.dataset_versions(repo)["versions"]
                except ModelpackError:
                    found = []
                if found:
                    data.append({"name": repo, "slug": self.src.slug_of[repo], "versions": found})
                    continue
                try:
                    total = self.src.runs(repo)["total"]
                except ModelpackError:
                    total = 0
                if total:
                    experiments.append({"name": repo, "slug": self.src.slug_of[repo], "runs": total})
                    continue
            versions = {e["digest"]: e["version"] for e in cat["versions"]}
            envs = [{"name": n, "version": versions.get(d, "?"), "digest": d} for n, d in _envs(cat)]
            count = sum(1 for e in cat["versions"] if not e["alias"])
            repos.append({"name": repo, "slug": self.src.slug_of[repo], "envs": envs, "count": count})
        return self._render("index.html", 0, repos=repos, data=data, experiments=experiments)

    def experiment(self, slug: str, q: Query = Query()) -> str:
        return experiments.experiment(self.src, self._render, slug, q)

    def run(self, slug: str, run_id: str) -> str:
        return experiments.run(self.src, self._render, slug, run_id)

    def repository(self, slug: str, q: Query = Query()) -> str:
        repo = self.src.repo_of[slug]
        error = None
        try:
            cat = self.src.catalog(repo, q)
        except ModelpackError as e:  # a bad --where is the user's to fix: show it, and the unfiltered table
            error, cat = str(e), self.src.catalog(repo)
            q = Query()
        rows = [e for e in cat["versions"] if not e["alias"]]
        env_by_digest: dict[str, list[str]] = {}
        for name, d in _envs(cat):
            env_by_digest.setdefault(d, []).append(name)
        metrics = metric_names(rows)
        chart_rows = sorted(rows, key=_version_key)
        chart_list = [
            charts.line_chart(
                m,
                [
                    Point(
                        e["version"],
                        _metric(e, m),
                        tuple(env_by_digest.get(e["digest"], ())),
                    )
                    for e in chart_rows
                ],
            )
            for m in metrics
        ]
        sortable = metrics + [
            m for m in LATENCY if any(m in (e["test"] or {}).get("metrics", {}) for e in rows)
        ]

        def sort_link(metric: str) -> str:
            return self.links.repo(slug, Query(metric, metric in LATENCY, q.where), sortable)

        prev_of = {b["tag"]: a["tag"] for a, b in pairwise(chart_rows)}
        return self._render(
            "repository.html",
            2,
            prev_of=prev_of,
            sort_link=sort_link,
            repo=repo,
            slug=slug,
            rows=rows,
            metrics=metrics,
            sortable=sortable,
            envs=env_by_digest,
            env_names=[n for n, _ in _envs(cat)],
            q=q,
            error=error,
            notes=cat.get("notes", ()),
            charts=chart_list,
            static=self.links.static,
        )

    def version(self, slug: str, tag: str) -> str:
        repo = self.src.repo_of[slug]
        info = self.src.inspect(repo, tag)
        digest = info["digest"]
        reports = []
        for r in info["reports"][:5]:  # the newest few: older ones are listed, not opened
            try:
                reports.append({**r, "body": self.src.report(repo, r["digest"])})
            except ModelpackError as e:  # one damaged report does not hide the rest of the page
                reports.append({**r, "body": None, "error": str(e)})
        cat = self.src.catalog(repo)
        events = []
        for name, _ in _envs(cat):
            for ev in self.src.history(repo, name)["events"]:
                if digest in (ev["toDigest"], ev["fromDigest"]):
                    events.append(ev)
        events.sort(key=lambda ev: ev["when"], reverse=True)
        versions = [e for e in cat["versions"] if not e["alias"]]
        ordered = sorted(versions, key=_version_key)
        tags = [e["tag"] for e in ordered]
        previous = tags[tags.index(tag) - 1] if tag in tags and tags.index(tag) > 0 else None
        curves, curves_error = self._curves(repo, [(tag, digest, info["record"])])
        return self._render(
            "version.html",
            3,
            repo=repo,
            slug=slug,
            tag=tag,
            info=info,
            rec=info["record"],
            reports=reports,
            artifacts=self.src.evidence(repo, digest),
            events=events,
            previous=previous,
            env_names=[n for n, _ in _envs(cat)],
            curves=curves,
            curves_error=curves_error,
        )

    def _curves(
        self, repo: str, releases: Sequence[tuple[str, str, dict[str, Any]]]
    ) -> tuple[list[Markup], str | None]:
        """A chart per history column, one series per release (tag, digest, record) that has a history;
        none unless every one of them has (an overlay with one side missing would mislead)."""
        if not releases or any(not rec.get("history") for _, _, rec in releases):
            return [], None
        try:
            docs = [(t, self.src.curves(repo, d)["curves"]) for t, d, _ in releases]
        except ModelpackError as e:  # a damaged history layer: said on the page, the rest still shows
            return [], str(e)
        columns = list(dict.fromkeys(c for _, doc in docs if doc for c in doc["columns"]))
        x_name = " / ".join(dict.fromkeys(doc["x"] for _, doc in docs if doc))
        return [
            charts.curves_chart(column, x_name, [(t, _series(doc, column)) for t, doc in docs])
            for column in columns
        ], None

    def compare(self, slug: str, a: str, b: str) -> str:
        repo = self.src.repo_of[slug]
        cat = self.src.catalog(repo)
        by_tag = {e["tag"]: e for e in cat["versions"]}
        for t in (a, b):
            if t not in by_tag:
                raise NotFoundError(f"no release {repo}:{t}")
        d = self.src.diff(repo, a, b, by_tag[a]["digest"], by_tag[b]["digest"])
        tags = [e["tag"] for e in sorted((e for e in cat["versions"] if not e["alias"]), key=_version_key)]
        sides = [(t, by_tag[t]["digest"], by_tag[t]["record"]) for t in (a, b)]
        curves, curves_error = self._curves(repo, sides)
        return self._render(
            "compare.html", 4, repo=repo, slug=slug, a=by_tag[a], b=by_tag[b], diff=d, tags=tags,
            curves=curves, curves_error=curves_error,
        )  # fmt: skip

    def environment(self, slug: str, env: str, metric: str | None = None) -> str:
        repo = self.src.repo_of[slug]
        cat = self.src.catalog(repo)
        hist = self.src.history(repo, env)
        # a version's own tag where it has one (its page exists in an export too), else the alias naming it
        tagged = {e["digest"]: e for e in cat["versions"] if not e["alias"]}
        by_digest = {**{e["digest"]: e for e in cat["versions"]}, **tagged}
        metrics = metric_names([e for e in cat["versions"] if not e["alias"]])
        if metric not in metrics:  # by default the metric most versions record
            metric = metrics[0] if metrics else None
        events = [
            {
                **ev,
                "fromVersion": by_digest.get(ev["fromDigest"] or "", {}).get("version"),
                "toVersion": by_digest.get(ev["toDigest"], {}).get("version", ev["version"]),
                "toTag": tagged.get(ev["toDigest"], {}).get("tag"),
            }
            for ev in hist["events"]
        ]
        chart = None
        if metric is not None:
            points = [
                Point(
                    f"{ev['when']} {ev['toVersion']}",
                    _metric(by_digest[ev["toDigest"]], metric) if ev["toDigest"] in by_digest else None,
                    (ev["action"],) if ev["action"] != "promote" else (),
                )
                for ev in reversed(events)
            ]
            chart = charts.line_chart(f"{metric} in {env}", points, css_class="chart timeline")
        current = tagged.get(hist["current"] or "")
        return self._render(
            "environment.html",
            3,
            repo=repo,
            slug=slug,
            env=env,
            hist=hist,
            events=events,
            current=current,
            metric=metric,
            metrics=metrics,
            chart=chart,
        )

    def lineage(self, slug: str) -> str:
        repo = self.src.repo_of[slug]
        cat = self.src.catalog(repo)
        rows = sorted((e for e in cat["versions"] if not e["alias"]), key=_version_key)
        datasets: list[str] = []
        images: list[str] = []
        edges: dict[str, list[str]] = {}
        for e in rows:
            v = f"version:{e['version']}"
            for ds in e["record"]["datasets"]:
                node = f"{ds['name']}@{(ds.get('sha256') or '')[:19]}"
                if node not in datasets:
                    datasets.append(node)
                edges.setdefault(f"dataset:{node}", []).append(v)
            if e["image"]:
                images.append(e["image"][:19])
                edges.setdefault(v, []).append(f"image:{e['image'][:19]}")
        env_nodes = []
        for name, d in _envs(cat):
            env_nodes.append(name)
            target = next((e for e in rows if e["digest"] == d), None)
            if target is not None:
                src = f"image:{target['image'][:19]}" if target["image"] else f"version:{target['version']}"
                edges.setdefault(src, []).append(f"environment:{name}")
        columns = [
            ("dataset", datasets),
            ("version", [e["version"] for e in rows]),
            ("image", list(dict.fromkeys(images))),
            ("environment", env_nodes),
        ]
        graph = charts.lineage_graph(columns, edges)
        return self._render("lineage.html", 2, repo=repo, slug=slug, graph=graph, rows=rows, cat=cat)


def _series(doc: dict[str, Any] | None, column: str) -> list[tuple[float, float]]:
    """(x, value) of one history column, the rows where training logged nothing for it left out."""
    if not doc or column not in doc["columns"]:
        return []
    i = 1 + doc["columns"].index(column)
    return [(float(r[0]), float(r[i])) for r in doc["rows"] if r[i] is not None]


def _envs(cat: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(cat["environments"].items())


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Metric names, the ones most versions record first (then by name): the columns and charts a reader
    looks for come before a metric one version tried."""
    counts: dict[str, int] = {}
    for e in rows:
        for m in e["record"]["metrics"]:
            counts[m] = counts.get(m, 0) + 1
    return sorted(counts, key=lambda m: (-counts[m], m))


def _metric(entry: dict[str, Any], name: str) -> float | None:
    m = entry["record"]["metrics"].get(name)
    if m is not None:
        return float(m["value"])
    tested = (entry.get("test") or {}).get("metrics", {})
    return float(tested[name]) if name in tested else None


def _version_key(entry: dict[str, Any]) -> tuple[int, Any, str]:
    try:
        return (0, PV(entry["version"]), entry["version"])
    except InvalidVersion:
        return (1, entry["record"]["created"], entry["version"])
