"""The portal over HTTP against a real registry: hostile text escaped on every page, read-only, the token,
the listen rule, the caches, and the static export (relative links that resolve, nothing from a CDN)."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import secrets
import socket
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.clirun import run_cli, script
from support.portal_fixtures import (
    HOSTILE_COLUMN,
    HOSTILE_METRIC,
    HOSTILE_REASON,
    SIGNATURE_TYPE,
    PortalRepo,
    make_portal_repo,
)
from support.portal_server import Served, serve_portal
from support.release_fixtures import EXAMPLES, build, variant

from modelpack import api, portal
from modelpack.errors import ModelpackError
from modelpack.oci import mediatypes as mt
from modelpack.portal.cache import DiskCache, Memo
from modelpack.portal.data import slugs
from modelpack.store.layout import LayoutStore


@pytest.fixture(scope="module")
def portal_repo(registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory) -> PortalRepo:
    return make_portal_repo(tmp_path_factory.mktemp("portal"), registry.host)


@pytest.fixture(scope="module")
def served(portal_repo: PortalRepo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    repos = [portal_repo.repo, portal_repo.data_repo]
    with serve_portal(repos, tmp_path_factory.mktemp("portal-store")) as s:
        yield s


def _get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kw: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def _pages(slug: str) -> list[str]:
    return [
        "",
        f"r/{slug}/",
        f"r/{slug}/index.html?sort=f1_macro&where=dataset%3Diris-test-v3",
        f"r/{slug}/v/1.0.0.html",
        f"r/{slug}/v/1.2.0.html",
        f"r/{slug}/compare/1.1.0/1.2.0.html",
        f"r/{slug}/env/staging.html",
        f"r/{slug}/env/prod.html?metric=accuracy",
        f"r/{slug}/lineage.html",
    ]


def test_catalog_answers_as_ls_does_with_verdicts_evidence_and_environments(
    portal_repo: PortalRepo, tmp_path: Path
) -> None:
    repo = portal_repo.repo
    with api.Targets(store_path=tmp_path / "s", environ={}) as targets:
        for sort, where in ((None, ()), ("f1_macro", ("dataset=iris-test-v3",)), ("latency_p95_ms", ())):
            cat = api.catalog(targets, repo, sort=sort, where=where, cache=DiskCache(tmp_path / "c"))
            ls = api.ls(targets, repo, sort=sort, where=where)
            assert [e.tag for e in cat.entries] == list(ls.tags), (sort, where)
        doc = api.catalog(targets, repo).to_json()
        assert doc["environments"] == {
            "prod": portal_repo.digests["1.1.0"],
            "staging": portal_repo.digests["1.1.0"],
        }
        rows = {v["tag"]: v for v in doc["versions"]}
        assert rows["1.1.0"]["signed"] and not rows["1.0.0"]["signed"]
        assert [s["kind"] for s in rows["1.1.0"]["signatures"]] == ["release", "model"]
        assert not rows["1.2.0"]["signed"]  # a sigstore bundle with no signature predicate is not one
        index = api.catalog(targets, portal_repo.index_repo).entries[0]
        assert [s.kind for s in index.signatures] == ["model"]  # found on the bundle, below the index
        assert rows["1.2.0"]["test"]["passed"] is False
        assert rows["1.2.0"]["test"]["metrics"]["latency_p95_ms"] == 3.2
        found = api.evidence(targets, f"{repo}:1.1.0")
        assert {a.artifact_type for a in found} == {SIGNATURE_TYPE, mt.TEST_REPORT_ARTIFACT}
        kinds = sorted(str(a.signature) for a in found if a.artifact_type == SIGNATURE_TYPE)
        assert kinds == ["model", "release"]
        unsigned = api.evidence(targets, f"{repo}:1.2.0")
        assert [a.signature for a in unsigned if a.artifact_type == SIGNATURE_TYPE] == [None]
        report = next(a for a in found if a.artifact_type == mt.TEST_REPORT_ARTIFACT)
        body = api.report(targets, repo, report.digest).report
        assert body["release"]["version"] == "1.1.0" and body["latency"]["latency_p95_ms"] == 6.5
        with pytest.raises(ModelpackError):
            api.report(targets, repo, "not-a-digest")


def test_every_page_escapes_hostile_registry_text(served: Served, portal_repo: PortalRepo) -> None:
    slug = served.slugs[portal_repo.repo]
    for path in _pages(slug):
        status, html, headers = _get(served.url(path))
        assert status == 200, (path, html[:500])
        assert "<script" not in html.lower(), path  # the pages carry no script, and no metric name runs
        assert "<img" not in html and "\x1b" not in html, path
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    _, repo_page, _ = _get(served.url(f"r/{slug}/"))
    assert "&lt;script&gt;alert(" in repo_page  # the metric is there, as text (table and chart)
    _, env_page, _ = _get(served.url(f"r/{slug}/env/staging.html"))
    assert "&lt;img src=x onerror=alert(" in env_page and "&lt;b&gt;bold&lt;/b&gt;" in env_page
    assert "mallory\\x1b[31m red" in env_page  # a terminal escape in the actor, made visible
    assert HOSTILE_METRIC not in repo_page and HOSTILE_REASON not in env_page
    for page in (f"r/{slug}/v/1.2.0.html", f"r/{slug}/compare/1.1.0/1.2.0.html"):
        html = _get(served.url(page))[1]
        assert "&lt;script&gt;alert(&#39;column&#39;)" in html and HOSTILE_COLUMN not in html, page


def test_training_curves_on_the_version_page_and_overlaid_on_compare(
    served: Served, portal_repo: PortalRepo
) -> None:
    slug = served.slugs[portal_repo.repo]
    html = _get(served.url(f"r/{slug}/v/1.1.0.html"))[1]
    curves = html[html.index('id="training-curves"') :]
    assert re.findall(r'<svg class="chart curves"[^>]*data-metric="([^"]+)"', curves) == ["loss", "val_acc"]
    # loss at step 0, 10, 20 over the full width: three points, the first at the left edge
    line = re.search(r'<polyline class="line series-0" data-series="1.1.0" points="([^"]+)"', curves)
    assert line is not None and len(line.group(1).split()) == 3 and line.group(1).startswith("56.0,")
    assert "3 rows over step from <code>logs/train.csv</code>" in html
    assert "no training history recorded" in _get(served.url(f"r/{slug}/v/1.0.0.html"))[1]
    both = _get(served.url(f"r/{slug}/compare/1.1.0/1.2.0.html"))[1]
    loss = both[both.index('data-metric="loss"') :].split("</svg>")[0]
    assert re.findall(r'<polyline class="line series-\d" data-series="([^"]+)"', loss) == ["1.1.0", "1.2.0"]
    assert re.findall(r'<g class="legend" data-series="([^"]+)"', loss) == ["1.1.0", "1.2.0"]
    # a column only one side logged is still drawn, for that side
    acc = both[both.index('data-metric="val_acc"') :].split("</svg>")[0]
    assert re.findall(r'<polyline[^>]*data-series="([^"]+)"', acc) == ["1.1.0"]
    one_sided = _get(served.url(f"r/{slug}/compare/1.0.0/1.1.0.html"))[1]
    assert "overlaid when both versions carry a training history" in one_sided


def _delta_row(html: str, metric: str) -> str:
    m = re.search(rf'<tr class="delta[^"]*" data-metric="{re.escape(metric)}">.*?</tr>', html, re.S)
    assert m is not None, metric
    return m.group(0)


def test_compare_colours_only_known_directions_and_says_when_datasets_differ(
    served: Served, portal_repo: PortalRepo
) -> None:
    """A falling number was red and a rising one green whatever the metric, while `better` said '?'; and
    1.0.0 (measured on iris-test) against 1.1.0 (on iris-test-v3) was called up."""
    slug = served.slugs[portal_repo.repo]
    same = _get(served.url(f"r/{slug}/compare/1.1.0/1.2.0.html"))[1]  # both measured on iris-test-v3
    f1 = _delta_row(same, "f1_macro")  # 0.93 -> 0.91, a gate says higher is better
    assert 'class="delta regressed"' in f1 and '<td class="down">' in f1 and "higher" in f1
    loss = _delta_row(same, "train_loss")  # 0.07 -> 0.09: no gate, no `better:`: no colour, no verdict
    assert '<td class="">' in loss and "unknown" in loss
    assert "regressed" not in loss and "improved" not in loss
    switched = _get(served.url(f"r/{slug}/compare/1.0.0/1.1.0.html"))[1]
    f1 = _delta_row(switched, "f1_macro")  # 0.88 -> 0.93, but on another dataset
    assert "not comparable" in f1 and "improved" not in f1 and '<td class="">' in f1
    assert re.search(r"dataset iris-test@[0-9a-f]{12} → iris-test-v3@[0-9a-f]{12}", f1), f1
    table = _get(served.url(f"r/{slug}/"))[1]
    assert re.search(r"\(iris-test-v3@[0-9a-f]{12}\)", table)  # metrics say which dataset version


def test_pages_show_values_as_people_read_them(served: Served, portal_repo: PortalRepo) -> None:
    """`python ?`, `dirty: False` (a Python repr), unrounded latency, chart labels past the edge and a
    versions table wider than the page, as the trial saw them."""
    slug = served.slugs[portal_repo.repo]
    page = _get(served.url(f"r/{slug}/v/1.1.0.html"))[1]
    assert "dirty: False" not in page and "python ?" not in page and "False<br>" not in page
    latency = page[page.index('class="latency"') :].split("</table>")[0]
    assert all(len(v.split(".")[-1]) <= 2 for v in re.findall(r"<td>([0-9.]+)</td>", latency)), latency
    repo_page = _get(served.url(f"r/{slug}/"))[1]
    assert '<div class="scroll" id="versions-scroll"><table id="versions">' in repo_page
    chart = repo_page[repo_page.index('<svg class="chart"') :].split("</svg>")[0]
    ticks = re.findall(r'<text class="tick" x="[^"]+" y="188" text-anchor="(\w+)">', chart)  # the x axis
    assert ticks[0] == "start" and ticks[-1] == "end", ticks  # the edge labels stay inside
    for anchor_x in re.findall(r'<g class="env-mark"[^>]*>.*?<text x="([0-9.]+)" text-anchor="end"', chart):
        assert float(anchor_x) <= 640


def test_a_dataset_entry_links_to_its_dataset_version_when_the_portal_has_its_repository(
    served: Served, portal_repo: PortalRepo
) -> None:
    slug, data_slug = served.slugs[portal_repo.repo], served.slugs[portal_repo.data_repo]
    page = f"r/{data_slug}/d/{portal_repo.data_digest.replace(':', '-')}.html"
    link = f'<a class="dataset" href="../../../{page}">{portal_repo.data_repo}:v1</a>'
    assert link in _get(served.url(f"r/{slug}/v/1.1.0.html"))[1]
    other = _get(served.url(f"r/{slug}/v/1.2.0.html"))[1]  # its dataset repository is not in this portal
    assert f'<span class="dataset-ref">{portal_repo.other_data}</span>' in other
    assert 'class="dataset"' not in other
    assert f'href="../../{page}">iris-published</a>' in _get(served.url(f"r/{slug}/lineage.html"))[1]
    index = _get(served.url(""))[1]
    assert f'href="{page}">v1</a>' in index and index.count('class="repo"') == 1  # a dataset, not a model
    status, html, _ = _get(served.url(page))
    assert status == 200 and portal_repo.data_digest in html
    with (EXAMPLES / "iris-onnx" / "data" / "iris-test.csv").open() as f:
        rows = list(csv.DictReader(f))
    for species, n in Counter(r["species"] for r in rows).items():
        assert f'<tr class="class" data-class="{species}"><td>{species}</td><td>{n}</td>' in html
    summary = html[html.index('id="dataset-summary"') :].split("</table>")[0]
    assert "<th>files</th><td>1</td>" in summary and f"<th>rows</th><td>{len(rows)}</td>" in summary
    assert "sepal_length, sepal_width" in html  # the file's columns
    bad = page.replace("sha256-", "sha256-0")[:-6] + ".html"
    assert _get(served.url(bad))[0] == 404


def test_bad_where_is_shown_on_the_page_and_unknown_pages_are_404(
    served: Served, portal_repo: PortalRepo
) -> None:
    slug = served.slugs[portal_repo.repo]
    status, html, _ = _get(served.url(f"r/{slug}/index.html?where=acurracy%3E%3D0.9"))
    assert status == 200 and 'id="query-error"' in html and "did you mean &#39;accuracy&#39;" in html
    assert html.count('class="version"') == 3  # the unfiltered table under the message
    both = _get(served.url(f"r/{slug}/index.html?where=dataset%3Diris-test-v3+f1_macro%3E%3D0.92"))[1]
    assert re.findall(r'data-version="([^"]+)"', both) == ["1.1.0"]  # several conditions: all must hold
    assert _get(served.url("r/nope/"))[0] == 404
    assert _get(served.url(f"r/{slug}/v/9.9.9.html"))[0] in (404, 502)
    assert _get(served.url(f"r/{slug}/compare/1.0.0/9.9.9.html"))[0] == 404
    assert _get(served.url("../../etc/passwd"))[0] == 404
    status, _, headers = _get(served.url(f"r/{slug}/compare.html?a=1.0.0&b=1.1.0"))
    assert status == 302 and headers["Location"] == "compare/1.0.0/1.1.0.html"


def test_the_portal_is_read_only(served: Served) -> None:
    for method in ("POST", "PUT", "DELETE"):
        status, _, headers = _get(served.url(), method=method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, body, _ = _get(served.url(), method="HEAD")
    assert status == 200 and body == ""


def test_a_rebound_host_name_is_refused(served: Served) -> None:
    assert _get(served.url(), {"Host": "evil.example:80"})[0] == 421
    assert _get(served.url(), {"Host": "localhost:8765"})[0] == 200


def test_token_is_required_and_swapped_for_a_cookie(portal_repo: PortalRepo, tmp_path: Path) -> None:
    token = "t0ken-of-sixteen-chars"
    logged: list[str] = []
    with serve_portal([portal_repo.repo], tmp_path / "store", token=token, log=logged.append) as s:
        assert _get(s.url())[0] == 401
        assert _get(s.url(), {"Authorization": "Bearer wrong-token-000000"})[0] == 401
        assert _get(s.url(), {"Authorization": f"Bearer {token}"})[0] == 200
        status, _, headers = _get(s.url(f"?token={token}"))
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert _get(s.url(), {"Cookie": cookie.split(";")[0]})[0] == 200
    assert logged and not any(token in line for line in logged)
    assert any("token=***" in line for line in logged)


def test_listening_beyond_loopback_needs_a_token(portal_repo: PortalRepo) -> None:
    out = run_cli("ui", portal_repo.repo, "--host", "0.0.0.0")
    assert out.returncode != 0 and out.stderr.startswith("error: --host 0.0.0.0: listening beyond")
    assert out.stderr.count("\n") <= 2 and "Traceback" not in out.stderr


def test_ui_serves_on_loopback_and_prints_where(portal_repo: PortalRepo, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MODELPACK_VERBOSE"}
    args = [str(script()), "ui", portal_repo.repo, "--port", str(port), "--store", str(tmp_path / "s")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == f"modelpack ui: http://127.0.0.1:{port}/ (Ctrl-C stops)\n", line
        status, html, _ = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and portal_repo.repo in html
    finally:
        proc.terminate()  # this test's own child, by its pid
        proc.wait(10)


def test_export_writes_a_static_site_with_relative_links(portal_repo: PortalRepo, tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {"MODELPACK_STORE": str(tmp_path / "s")}
    out = run_cli("ui", "--export", str(site), portal_repo.repo, portal_repo.data_repo, env=env)
    assert out.returncode == 0, out.stderr
    assert re.match(r"wrote \d+ pages to ", out.stdout)
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 15
    for page in pages:
        html = page.read_text()
        rest = html.replace(portal_repo.repo, "").replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "<script" not in html.lower() and "http://" not in rest and "https://" not in rest
        for link in re.findall(r'href="([^"]+)"', html):
            assert not link.startswith(("/", "http:", "https:")), (page, link)
            target = (page.parent / link.split("?")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(site)} links to missing {link}"
    assert any(p.name.startswith("sort-") for p in pages)  # the sorted tables an export cannot compute
    data_page = f"{portal_repo.data_digest.replace(':', '-')}.html"
    assert [p.name for p in pages if p.parent.name == "d"] == [data_page]  # linked from 1.1.0 and the index


def test_private_registry_is_read_with_docker_credentials_never_shown(
    portal_repo: PortalRepo, tls_registry: RegistryProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = tls_registry.username, tls_registry.password
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {tls_registry.host: {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    ca = str(tls_registry.ca_file)
    dest = f"{tls_registry.host}/t/portal-private-{secrets.token_hex(3)}"
    with api.Targets(store_path=tmp_path / "s", environ={}) as targets:
        api.copy(targets, f"{portal_repo.repo}:1.1.0", f"oci:{tmp_path / 'layout'}:1.1.0", referrers=True)
    with api.Targets(tls=api.TlsOptions(ca_file=ca), store_path=tmp_path / "s", environ={}) as targets:
        api.copy(targets, f"oci:{tmp_path / 'layout'}:1.1.0", f"{dest}:1.1.0", referrers=True)
    with serve_portal([dest], tmp_path / "portal-store", ca_file=ca) as s:
        slug = s.slugs[dest]
        for path in ("", f"r/{slug}/", f"r/{slug}/v/1.1.0.html", f"r/{slug}/lineage.html"):
            status, html, _ = _get(s.url(path))
            assert status == 200, (path, html[:300])
            assert password not in html and auth not in html and f"{user}:" not in html, path
        assert 'data-version="1.1.0"' in _get(s.url(f"r/{slug}/"))[1]
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nobody"))
    with serve_portal([dest], tmp_path / "portal-store-2", ca_file=ca) as s:
        status, html, _ = _get(s.url())
        assert status == 200 and "modelpack login" in html  # the one-line error, in the repository's row


def test_export_reads_the_local_store_and_a_layout_too(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")
    for i, version in enumerate(("1.0.0", "1.1.0")):
        project = variant(tmp_path, "iris-onnx", metrics={"accuracy": 0.9 + i / 100}, model_extra=b"\0" * i)
        build(project, store, version)
    layout = f"oci:{tmp_path / 'layout'}"
    with api.Targets(store_path=tmp_path / "store", environ={}) as targets:
        api.copy(targets, "iris-onnx:1.0.0", f"{layout}:1.0.0")
        written = portal.export(targets, ["iris-onnx", layout], tmp_path / "site").pages
    site = tmp_path / "site"
    assert written == len(list(site.rglob("*.html")))
    table = (site / "r" / "iris-onnx" / "index.html").read_text()
    assert re.findall(r'data-version="([^"]+)"', table) == ["1.0.0", "1.1.0"]
    assert (site / "r" / "iris-onnx" / "compare" / "1.0.0" / "1.1.0.html").is_file()
    slug = slugs(["iris-onnx", layout])[layout]
    assert "modelpack pull" in (site / "r" / slug / "v" / "1.0.0.html").read_text()


def test_disk_cache_is_bounded_and_memo_expires(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", max_bytes=4000)
    for i in range(20):
        cache.put(f"sha256:{i:064x}", bytes(900))
    kept = [i for i in range(20) if cache.get(f"sha256:{i:064x}") is not None]
    total = sum(p.stat().st_size for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert total <= 4000 and 19 in kept and 0 not in kept
    cache.put("../../escape", b"x")
    assert not (tmp_path / "escape").exists() and cache.get("../../escape") == b"x"
    now = [0.0]
    memo = Memo(ttl=5.0, clock=lambda: now[0])
    calls = []
    assert memo.get("k", lambda: calls.append(1) or len(calls)) == 1
    assert memo.get("k", lambda: calls.append(1) or len(calls)) == 1
    now[0] = 6.0
    assert memo.get("k", lambda: calls.append(1) or len(calls)) == 2
