"""The portal in a real headless Chromium against a real registry: every page loads, the table, the
charts, the compare view and the environment timeline are there, and hostile registry text stays text.
Screenshots go to tests/artifacts/portal (gitignored)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.registry import RegistryProcess
from support.portal_fixtures import HOSTILE_METRIC, HOSTILE_REASON, PortalRepo, make_portal_repo
from support.portal_server import Served, chromium, screenshot, serve_portal


@pytest.fixture(scope="module")
def portal_repo(registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory) -> PortalRepo:
    return make_portal_repo(tmp_path_factory.mktemp("portal"), registry.host)


@pytest.fixture(scope="module")
def served(portal_repo: PortalRepo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    repos = [portal_repo.repo, portal_repo.index_repo, portal_repo.data_repo]
    with serve_portal(repos, tmp_path_factory.mktemp("portal-store")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def _no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018  (a script that ran would have opened one)


def _wait(driver: Any, ready: Any) -> None:
    """A click navigates on its own time: wait for the next page (a timeout here fails the test)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(ready)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def test_repositories_page_lists_environments(browser: Any, served: Served, portal_repo: PortalRepo) -> None:
    browser.get(served.url())
    rows = _css(browser, "#repositories tr.repo")
    assert [r.find_elements("css selector", "td a")[0].text for r in rows] == [
        portal_repo.repo,
        portal_repo.index_repo,
    ]
    envs = [{e.text for e in r.find_elements("css selector", ".env")} for r in rows]
    assert envs == [{"prod → 1.1.0", "staging → 1.1.0"}, {"prod → 0.1.0"}], envs
    screenshot(browser, "repositories")


def test_repository_page_table_charts_and_filter(
    browser: Any, served: Served, portal_repo: PortalRepo
) -> None:
    slug = served.slugs[portal_repo.repo]
    browser.get(served.url(f"r/{slug}/"))
    versions = [r.get_attribute("data-version") for r in _css(browser, "#versions tr.version")]
    assert versions == ["1.0.0", "1.1.0", "1.2.0"]
    row = {r.get_attribute("data-version"): r.text for r in _css(browser, "#versions tr.version")}
    assert "passed" in row["1.1.0"] and "signed (release, model)" in row["1.1.0"] and "prod" in row["1.1.0"]
    assert "failed" in row["1.2.0"] and "signed" not in row["1.2.0"]
    charts = _css(browser, "#charts svg.chart")
    assert {c.get_attribute("data-metric") for c in charts} >= {"accuracy", "f1_macro", HOSTILE_METRIC}
    f1 = next(c for c in charts if c.get_attribute("data-metric") == "f1_macro")
    assert len(f1.find_elements("css selector", "circle.point")) == 3
    assert {m.get_attribute("data-env") for m in f1.find_elements("css selector", "g.env-mark")} == {
        "prod",
        "staging",
    }
    _no_alert(browser)
    screenshot(browser, "repository")
    browser.set_window_size(1400, 760)  # the README's picture (docs/portal.png is a copy of this one)
    screenshot(browser, "readme")
    browser.set_window_size(1400, 1000)
    # "the best F1 on dataset v3", asked through the form (plain GET, no JavaScript needed)
    from selenium.webdriver.support.ui import Select

    Select(_css(browser, "select[name=sort]")[0]).select_by_value("f1_macro")
    box = _css(browser, "input[name=where]")[0]
    box.clear()
    box.send_keys("dataset=iris-test-v3")
    _css(browser, "form.query button")[0].click()
    _wait(browser, lambda d: "sort=f1_macro" in d.current_url and _css(d, "#query"))
    best = [r.get_attribute("data-version") for r in _css(browser, "#versions tr.version")]
    assert best == ["1.1.0", "1.2.0"], best
    screenshot(browser, "repository-best-f1-v3")


def test_version_page(browser: Any, served: Served, portal_repo: PortalRepo) -> None:
    slug = served.slugs[portal_repo.repo]
    browser.get(served.url(f"r/{slug}/v/1.1.0.html"))
    assert portal_repo.digests["1.1.0"] in browser.page_source
    assert f"modelpack pull {portal_repo.repo}:1.1.0" in _css(browser, "#commands")[0].text
    assert f"modelpack rollback {portal_repo.repo} prod 1.1.0" in _css(browser, "#commands")[0].text
    assert "iris-test-v3" in _css(browser, "#datasets")[0].text
    report = _css(browser, ".report")[0]
    assert "passed" in report.text and "p95_ms" in report.text and "virginica" in report.text
    assert "sigstore" in _css(browser, "#evidence")[0].text
    kinds = [r.get_attribute("data-kind") for r in _css(browser, "#signatures tr.signature")]
    assert kinds == ["release", "model"]
    assert "modelpack verify --key" in _css(browser, "#not-verified")[0].text
    events = _css(browser, "#events")[0].text
    assert "prod" in events and "after staging" in events
    charts = _css(browser, "#training-curves svg.curves")
    assert [c.get_attribute("data-metric") for c in charts] == ["loss", "val_acc"]
    for chart in charts:  # drawn, with a size: the browser parsed the inline SVG
        line = chart.find_elements("css selector", "polyline")
        assert len(line) == 1 and line[0].size["width"] > 100, chart.get_attribute("outerHTML")[:300]
    screenshot(browser, "version")
    _css(browser, "#datasets a.dataset")[0].click()  # the dataset version it was built with
    _wait(browser, lambda d: "/d/sha256-" in d.current_url and _css(d, "#classes"))
    assert portal_repo.data_digest in browser.page_source
    assert len(_css(browser, "#classes tr.class")) == 3
    screenshot(browser, "dataset")


def test_compare_overlays_training_curves_with_a_legend(
    browser: Any, served: Served, portal_repo: PortalRepo
) -> None:
    slug = served.slugs[portal_repo.repo]
    browser.get(served.url(f"r/{slug}/index.html"))
    next(a for a in _css(browser, "a.compare") if a.text == "vs 1.1.0").click()
    _wait(browser, lambda d: "/compare/" in d.current_url and _css(d, "#training-curves"))
    charts = {c.get_attribute("data-metric"): c for c in _css(browser, "#training-curves svg.curves")}
    loss = charts["loss"]
    lines = loss.find_elements("css selector", "polyline")
    assert [x.get_attribute("data-series") for x in lines] == ["1.1.0", "1.2.0"]
    assert lines[0].value_of_css_property("stroke") != lines[1].value_of_css_property("stroke")
    legend = [g.text for g in loss.find_elements("css selector", "g.legend")]
    assert legend == ["1.1.0", "1.2.0"], legend
    screenshot(browser, "compare-curves")


def test_compare_view(browser: Any, served: Served, portal_repo: PortalRepo) -> None:
    slug = served.slugs[portal_repo.repo]
    browser.get(served.url(f"r/{slug}/index.html"))
    link = next(a for a in _css(browser, "a.compare") if a.text == "vs 1.1.0")
    link.click()
    _wait(browser, lambda d: "/compare/" in d.current_url and _css(d, "#metric-deltas"))
    assert "1.1.0 → 1.2.0" in _css(browser, "h1")[0].text
    rows = {r.get_attribute("data-metric"): r for r in _css(browser, "#metric-deltas tr.delta")}
    f1 = rows["f1_macro"]  # both on iris-test-v3; the gate says higher is better
    assert "-0.02" in f1.text and "regressed" in f1.get_attribute("class")
    assert f1.find_elements("css selector", "td.down")
    loss = rows["train_loss"]  # rising, with no known direction: no colour
    assert not loss.find_elements("css selector", "td.up, td.down") and "unknown" in loss.text
    assert "lr" in _css(browser, "#changes-params")[0].text
    screenshot(browser, "compare")


def test_environment_timeline_and_hostile_text(browser: Any, served: Served, portal_repo: PortalRepo) -> None:
    slug = served.slugs[portal_repo.repo]
    browser.get(served.url(f"r/{slug}/env/staging.html"))
    events = _css(browser, "#timeline tr.event")
    assert [e.get_attribute("class").split()[1] for e in events] == [
        "rollback",
        "promote",
        "promote",
        "promote",
    ]
    assert "1.2.0 → 1.1.0" in events[0].text and "carol" in events[0].text and "latency" in events[0].text
    hostile = events[1]
    assert HOSTILE_REASON in hostile.text  # shown as text, not as markup
    assert "\\x1b[31m" in hostile.text and "\x1b" not in browser.page_source
    assert not _css(browser, "#timeline img") and not _css(browser, "#timeline b")
    assert "1.1.0" in _css(browser, "#current")[0].text
    timeline = _css(browser, "svg.timeline")
    assert timeline and len(timeline[0].find_elements("css selector", "circle.point")) == 4
    _no_alert(browser)
    screenshot(browser, "environment")
    browser.get(served.url(f"r/{slug}/lineage.html"))
    nodes = {n.get_attribute("data-node") for n in _css(browser, "svg.lineage g.node")}
    assert {"version:1.0.0", "environment:prod", "environment:staging"} <= nodes
    assert any(n.startswith("dataset:iris-test-v3@sha256:") for n in nodes)
    screenshot(browser, "lineage")


def test_artifacts_folder_is_ignored() -> None:
    ignore = (Path(__file__).parent.parent / ".gitignore").read_text()
    assert "tests/artifacts/" in ignore


def test_lineage_of_an_index_release_runs_through_its_image(
    browser: Any, served: Served, portal_repo: PortalRepo
) -> None:
    browser.get(served.url(f"r/{served.slugs[portal_repo.index_repo]}/lineage.html"))
    nodes = {n.get_attribute("data-node") for n in _css(browser, "svg.lineage g.node")}
    images = [n for n in nodes if n.startswith("image:sha256:")]
    assert len(images) == 1 and {"version:0.1.0", "environment:prod"} <= nodes, nodes
    assert len(_css(browser, "svg.lineage line.edge")) >= 2  # version -> image -> prod (and its datasets)
    assert "image: sha256:" in _css(browser, "#lineage-list")[0].text
    screenshot(browser, "lineage-index")
