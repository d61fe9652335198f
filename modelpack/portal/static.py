"""`ui --export DIR`: every page as a file, relative links only, for a CI artifact or GitHub Pages.

An export has no server to sort or filter for it, so each sortable column gets its own page
(`sort-N.html`), each environment one page per metric, and compare pages exist for each version against
the one before it (the links the version pages carry).

A page that cannot be made (a tag whose release cannot be read, a name the file system refuses) is skipped
and said, never the end of the export: one bad tag in a registry must not cost a CI job its whole site.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from modelpack.errors import ModelpackError
from modelpack.portal import datasets
from modelpack.portal.data import Query, Source
from modelpack.portal.views import LATENCY, Links, Pages, metric_names


@dataclass(frozen=True)
class Exported:
    pages: int
    skipped: tuple[tuple[str, str], ...]  # (the page's path in the site, why it could not be made)


def export_site(source: Source, dest: Path) -> Exported:
    """Writes the site under `dest` (created; existing pages overwritten)."""
    from modelpack.portal.views import _version_key

    pages = Pages(source, Links(static=True))
    links = pages.links
    written = 0
    skipped: list[tuple[str, str]] = []

    def write(rel: str, html: str | Callable[[], str]) -> bool:
        nonlocal written
        path = dest / rel
        try:
            text = html if isinstance(html, str) else html()
            if not path.resolve().is_relative_to(dest.resolve()):
                raise ModelpackError(f"{rel} would be written outside {dest}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except ModelpackError as e:
            skipped.append((rel, e.message))
            return False
        except OSError as e:  # e.g. a tag longer than a file name may be
            skipped.append((rel, e.strerror or str(e)))
            return False
        written += 1
        return True

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
        bad = {
            e["tag"]
            for e in rows
            if not write(links.version(slug, e["tag"]), _later(pages.version, slug, e["tag"]))
        }
        for old, new in pairwise(rows):
            if not {old["tag"], new["tag"]} & bad:
                a, b = old["tag"], new["tag"]
                write(links.compare(slug, a, b), _later(pages.compare, slug, a, b))
        for env in sorted(cat["environments"]):
            if write(links.env(slug, env), _later(pages.environment, slug, env)):
                for m in metrics:
                    write(links.env(slug, env, m, metrics), _later(pages.environment, slug, env, m))
        write(links.lineage(slug), _later(pages.lineage, slug))
    for slug, digest in sorted(data_pages):
        write(links.dataset(slug, digest), _later(pages.dataset, slug, digest))
    return Exported(written, tuple(skipped))


def _later(render: Callable[..., str], *args: str) -> Callable[[], str]:
    return lambda: render(*args)
