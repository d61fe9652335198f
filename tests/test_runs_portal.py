"""The portal's experiment pages: the runs table with the typed filters, params against a metric, the
curves of several runs overlaid, and a run's page (read through the api, as every page is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpack import track
from modelpack.errors import NotFoundError
from modelpack.portal.cache import DiskCache, Memo
from modelpack.portal.data import Source
from modelpack.portal.server import route
from modelpack.portal.views import Pages
from modelpack.targets import Targets


def test_experiment_and_run_pages(registry, tmp_path: Path) -> None:
    repo = f"{registry.host}/acme/portal-runs"
    ids = {}
    for alpha, f1 in ((1e-4, 0.91), (1e-3, 0.85), (1e-2, 0.60)):
        with track.run(
            params={"alpha": alpha}, tags=["sweep"], repo=repo, store=tmp_path / "s", sample_every=60
        ) as r:
            for step in range(3):
                r.log(step, f1=f1 - (2 - step) * 0.1, loss=1 - f1)
        ids[alpha] = r.id
    with Targets(store_path=tmp_path / "fresh") as targets:
        pages = Pages(Source(targets, [repo], DiskCache(tmp_path / "c"), Memo()))
        slug = pages.src.slug_of[repo]
        _, index, _ = route(pages, "/", {})
        assert 'id="experiments"' in index and f"r/{slug}/runs.html" in index

        _, html, _ = route(pages, f"/r/{slug}/runs.html", {"where": ["alpha<0.005"], "sort": ["f1"]})
        assert html.count('class="run"') == 2 and ids[1e-2] not in html
        assert html.index(ids[1e-4]) < html.index(ids[1e-3])  # best f1 first
        assert 'class="chart scatter"' in html and 'data-x="alpha"' in html
        assert html.count('data-series="') >= 4  # f1 and loss, two runs each, overlaid

        _, bad, _ = route(pages, f"/r/{slug}/runs.html", {"where": ["alpha<<1"]})
        assert 'id="query-error"' in bad and bad.count('class="run"') == 3

        _, one, _ = route(pages, f"/r/{slug}/run/{ids[1e-4]}.html", {})
        assert 'id="status">finished' in one and "0.0001" in one and 'class="chart curves"' in one
        assert 'id="gpus"' in one and 'data-metric="rss_bytes"' in one  # sampled at the end at least
        with pytest.raises(NotFoundError):
            route(pages, f"/r/{slug}/run/nope.html", {})
