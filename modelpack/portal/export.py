"""`ui --export DIR`: every page as a file, relative links only, for a CI artifact or GitHub Pages.

An export has no server to sort or filter for it, so each sortable column gets its own page
(`sort-N.html`), each environment one page per metric, and compare pages exist for each version against
the one before it (the links the version pages carry).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from modelpack.portal import datasets
from modelpack.portal.data import Query, Source
from modelpack.portal.views import LATENCY, Links, Pages, metric_names


def export_site(source: Source, dest: Path) -> int:
    """Writes the site under `dest` (created; existing pages overwritten); returns the number of pages."""
    from modelpack.portal.views import _version_key

    pages = Pages(source, Links(static=True))
    links = pages.links
    written = 0

    def write(rel: str, html: str) -> None:
        nonlocal written
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
        written += 1

    write("index.html", pages.index())
    data_pages: set[tuple[str, str]] = set()  # (slug, digest): a dataset version's page, written once
    for repo, slug in source.slug_of.items():
        cat = source.catalog(repo)
        if not cat["versions"]:
            data_pages |= {(slug, v["digest"]) for v in source.dataset_versions(repo)["versions"]}
        rows = sorted((e for e in cat["versions"] if not e["alias"]), key=_version_key)
        for e in rows:
            data_pages |= {
                found for d in e["record"]["datasets"] if (found := datasets.linked(d, source.slug_of))
            }
        metrics = metric_names(rows)
        sortable = metrics + [
            m for m in LATENCY if any(m in (e["test"] or {}).get("metrics", {}) for e in rows)
        ]
        write(links.repo(slug), pages.repository(slug))
        for m in sortable:
            q = Query(m, m in LATENCY)
            write(links.repo(slug, q, sortable), pages.repository(slug, q))
        for e in rows:
            write(links.version(slug, e["tag"]), pages.version(slug, e["tag"]))
        for old, new in pairwise(rows):
            write(links.compare(slug, old["tag"], new["tag"]), pages.compare(slug, old["tag"], new["tag"]))
        for env in sorted(cat["environments"]):
            write(links.env(slug, env), pages.environment(slug, env))
            for m in metrics:
                write(links.env(slug, env, m, metrics), pages.environment(slug, env, m))
        write(links.lineage(slug), pages.lineage(slug))
    for slug, digest in sorted(data_pages):
        write(links.dataset(slug, digest), pages.dataset(slug, digest))
    return written
