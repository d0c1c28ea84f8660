"""The workbench's quality pages, served by the read API's app as its own database role, with the network cut off:
the scorecards each key may open, the validation history per suite and release with links to each run's Data Docs
page, the Data Docs themselves (their index lists the runs, a validation page draws its status icons) and the
API's /docs — no request leaving 127.0.0.1.

The Data Docs are a real gate build: two runs of the master-index suites (tests/expectations/test_gate.py's
stand-in tables, in a throwaway database) into ``settings.gx_dir()`` of a hub home of the module's own, each
recorded in the warehouse's validation history as the pipeline records it, the first published as release 1, the
second blocked. The scorecards are written beside them by the reports' own builders.
"""

from __future__ import annotations

import http.client
import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hub import settings
from hub.api_keys import create_key
from hub.workbench.quality import docs_site
from reports.render import CHINA_STANDARD_TIME, when
from tests.expectations.test_gate import DDL, load_bad, load_good
from tests.helpers import empty_warehouse
from tests.workbench.browser import artefact_path, open_browser, served_as_api_role, sign_in
from warehouse.audit import record_gate_run
from warehouse.releases import record_blocked

PREFIX = f"hub_q{secrets.token_hex(4)}_"
DEPARTMENTS = {"civil_affairs": ["mz_dibao"], "health": ["wj_chusheng"], "social_security": ["rs_yanglao"]}


def _outcome(expectation: str, table: str, success: bool) -> dict:
    return {"expectation": expectation, "table": table, "column": None, "success": success, "observed": "0",
            "unexpected_count": 0 if success else 3, "unexpected_percent": 0.0 if success else 1.5}


def _source_suites(success: bool) -> list[dict]:
    """Source suites beside the master index in the history (their Data Docs pages are not part of this build)."""
    return [{"suite": f"source.{name}", "success": success, "row_count": 120,
             "outcomes": [_outcome("expect_table_row_count_to_be_between", "std.resident", True),
                          _outcome("expect_column_values_to_not_be_null", "std.resident", success)]}
            for name in ("mz_dibao", "wj_chusheng")]


def _gate_runs(server_admin_url: str, engine: sa.Engine) -> list[int]:
    """Two real gate runs into the hub home's gx_dir, recorded in the validation history; release 1 from the first."""
    from expectations.gate import validate_master_index

    name = f"hub_gx_quality_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_admin_url).set(database=name).render_as_string(hide_password=False)
    runs = []
    try:
        stand_in = sa.create_engine(url)
        with stand_in.begin() as conn:
            for stmt in DDL:
                conn.execute(sa.text(stmt))
        stand_in.dispose()
        for load, passing in ((load_good, True), (load_bad, False)):
            load(url)
            summary = validate_master_index(url, settings.gx_dir())
            assert summary.success is passing
            with engine.begin() as conn:
                run_id = record_gate_run(conn, [{"suite": summary.suite, "success": summary.success,
                                                 "row_count": summary.row_count,
                                                 "outcomes": [asdict(o) for o in summary.outcomes]},
                                                *_source_suites(passing)],
                                         docs_path=str(summary.docs_index))
                if passing:
                    conn.execute(sa.text(
                        "INSERT INTO publish.release (release_no, published_at, master_count, record_count,"
                        " content_hash, validation_run_id) VALUES (1, now(), 6, 9, 'test', :run)"), {"run": run_id})
                else:
                    record_blocked(conn, run_id, "gate failed: master_index")
            runs.append(run_id)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return runs


@pytest.fixture(scope="module")
def hub(engine, database_url, server_admin_url, tmp_path_factory):
    """The gate's Data Docs and the scorecards in a hub home of this module, the app on loopback as the API's role,
    keys of an auditor and of two departments."""
    from reports.department_scorecard import build_department_scorecards
    from reports.scorecard import build_scorecard

    with pytest.MonkeyPatch.context() as mp:
        # a hub home of its own: the session's gx_dir (other modules' gate runs) stays as they left it
        mp.setenv("HUB_HOME", str(tmp_path_factory.mktemp("quality_hub_home")))
        mp.delenv("HUB_API_DATABASE_URL", raising=False)
        empty_warehouse(engine)
        runs = _gate_runs(server_admin_url, engine)
        with engine.begin() as conn:
            build_scorecard(conn, docs_site(), DEPARTMENTS)
            build_department_scorecards(conn, docs_site(), DEPARTMENTS)
            keys = {"auditor": create_key(conn, "social_security", "audit team", scopes=["auditor"]),
                    "civil": create_key(conn, "civil_affairs", "civil affairs data office"),
                    "health": create_key(conn, "health", "health office")}
        try:
            with served_as_api_role(engine, database_url, PREFIX) as base:
                yield {"base": base, "keys": keys, "engine": engine, "runs": runs}
        finally:
            empty_warehouse(engine)


@contextmanager
def _signed_in(hub, which: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub["base"], timeout=15, follow_redirects=False) as client:
        answer = client.post("/workbench/login", data={"key": hub["keys"][which], "next": "/workbench/quality/"})
        assert answer.status_code == 303
        yield client


def _raw_get(base: str, path: str, cookie: str) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        connection.request("GET", path, headers={"Cookie": cookie})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _rows(html: str, table: str) -> list[str]:
    body = html.split(f'<table id="{table}">')[1].split("</table>")[0]
    return re.findall(r"<tr data-run=.*?</tr>", body, re.DOTALL)


def test_an_auditor_sees_every_scorecard_and_the_history_per_suite_and_release(hub):
    first, second = hub["runs"]
    with _signed_in(hub, "auditor") as client:
        answer = client.get("/workbench/quality/")
        assert answer.status_code == 200, answer.text
        text = answer.text
        for href in ("/workbench/quality/docs/scorecard.html", "/workbench/quality/docs/scorecard_civil_affairs.html",
                     "/workbench/quality/docs/scorecard_health.html"):
            assert f'href="{href}"' in text
            assert client.get(href).status_code == 200
        rows = _rows(text, "history")
        assert len(rows) == 6  # two runs × (master_index + two sources)
        assert [r for r in rows if f'data-run="{second}" data-suite="master_index"' in r][0].count("未通过 failed") == 1
        published = [r for r in rows if f'data-run="{first}"' in r]
        assert len(published) == 3 and all("第 1 版" in r for r in published)
        assert all("blocked" in r for r in rows if f'data-run="{second}"' in r)
        # run times to the minute in China Standard Time under a header saying so, as on the other pages
        assert re.search(r"<td>20\d\d-\d\d-\d\d \d\d:\d\d</td>", rows[0]), "run times are in CST, to the minute"
        assert "+08:00" not in text.split('<table id="history">')[1] and "运行时间（北京时间）" in text
        with hub["engine"].connect() as conn:
            started = conn.execute(sa.text("SELECT started_at FROM audit.validation_run WHERE run_id = :r"),
                                   {"r": second}).scalar_one()
        assert f"<td>{when(started, short=True)}</td>" in rows[0] and when(started, short=True).endswith(
            started.astimezone(CHINA_STANDARD_TIME).strftime("%H:%M"))
        # each master-index run links its own two validation pages, and they are served
        links = re.findall(r'class="docs-link" href="([^"]+)">(\w+)</a>',
                           [r for r in rows if f'data-run="{first}" data-suite="master_index"' in r][0])
        assert [label for _, label in links] == ["crosswalk", "golden"]
        later = re.findall(r'class="docs-link" href="([^"]+)"',
                           [r for r in rows if f'data-run="{second}" data-suite="master_index"' in r][0])
        assert len(later) == 2 and not set(later) & {href for href, _ in links}
        for href, _ in links:
            page = client.get(href)
            assert page.status_code == 200 and "fa-check-circle" in page.text
            assert "'unsafe-inline'" in page.headers["content-security-policy"]
        # filters: one suite of one release
        filtered = client.get("/workbench/quality/", params={"suite": "master_index", "release": 1}).text
        assert [r.split('data-suite="')[1].split('"')[0] for r in _rows(filtered, "history")] == ["master_index"]
        assert f'data-run="{first}"' in _rows(filtered, "history")[0]


def test_a_department_sees_its_own_scorecard_and_suites_only(hub):
    with _signed_in(hub, "civil") as client:
        text = client.get("/workbench/quality/").text
        assert "/workbench/quality/docs/scorecard_civil_affairs.html" in text
        assert "scorecard_health.html" not in text and "docs/scorecard.html" not in text
        suites = {r.split('data-suite="')[1].split('"')[0] for r in _rows(text, "history")}
        assert suites == {"master_index", "source.mz_dibao"}
        assert client.get("/workbench/quality/docs/scorecard_civil_affairs.html").status_code == 200
        for other in ("scorecard.html", "scorecard_health.html"):
            refused = client.get(f"/workbench/quality/docs/{other}")
            assert refused.status_code == 403 and "审计员" in refused.text
        # asking for another department's suite shows the suites it may see
        assert "source.wj_chusheng" not in client.get("/workbench/quality/", params={"suite": "source.wj_chusheng"}).text


def test_a_department_opens_the_data_docs_of_its_own_sources_and_the_master_index_only(hub):
    """Validation and expectation pages of a source suite (as GX lays them out, and in the dotted form) beside the
    master index's: civil affairs opens mz_dibao's and the master index's, not health's wj_chusheng (403 page, as
    for a scorecard); health the other way round; the auditor every one; the index stays open to all."""
    site = docs_site()
    master = sorted(p.relative_to(site).as_posix() for p in (site / "validations" / "master_index").rglob("*.html"))[0]
    planted = []
    for name in ("mz_dibao", "wj_chusheng"):
        for path in (f"validations/source/{name}/__none__/20200101T000000.000000Z/hub_warehouse-source.{name}.html",
                     f"validations/source.{name}/__none__/20200101T000000.000000Z/hub_warehouse-source.{name}.html",
                     f"expectations/source/{name}.html"):
            (site / path).parent.mkdir(parents=True, exist_ok=True)
            (site / path).write_text(f"<p>suite source.{name}: 3 unexpected rows</p>", encoding="utf-8")
            planted.append(path)
    mine = {"civil": "mz_dibao", "health": "wj_chusheng"}
    with hub["engine"].connect() as conn:
        since = conn.execute(sa.text("SELECT coalesce(max(access_id), 0) FROM audit.access_log")).scalar_one()
    try:
        for which, own in mine.items():
            with _signed_in(hub, which) as client:
                text = client.get("/workbench/quality/").text
                assert "其他部门的页面需要审计员权限" in text and "only: another department's pages" in text
                for path in planted:
                    answer = client.get(f"/workbench/quality/docs/{path}")
                    if own in path:
                        assert answer.status_code == 200 and f"source.{own}" in answer.text, path
                    else:
                        assert answer.status_code == 403 and "审计员" in answer.text, (which, path)
                        assert "unexpected rows" not in answer.text
                for path in (master, "expectations/master_index/golden.html", "index.html"):
                    assert client.get(f"/workbench/quality/docs/{path}").status_code == 200, path
        with _signed_in(hub, "auditor") as client:
            assert "docs-rights" not in client.get("/workbench/quality/").text
            assert all(client.get(f"/workbench/quality/docs/{path}").status_code == 200 for path in planted)
    finally:
        for path in planted:
            (site / path).unlink()
            folder = (site / path).parent
            while folder != site and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
    with hub["engine"].connect() as conn:
        refused = conn.execute(sa.text("SELECT count(*) FROM audit.access_log WHERE access_id > :a AND endpoint LIKE"
                                       " 'GET /workbench/quality/docs/%' AND status = 403"), {"a": since}).scalar_one()
    assert refused == 6  # each refusal is in the access log: three pages of the other department, two keys


def test_the_docs_are_for_signed_in_users_and_never_leave_the_site(hub, tmp_path):
    outside = tmp_path / "secret.html"
    outside.write_text("<p>not part of the Data Docs</p>")
    (docs_site() / "link_out.html").symlink_to(outside)
    anonymous = httpx.get(f"{hub['base']}/workbench/quality/docs/index.html", follow_redirects=False)
    assert anonymous.status_code == 303 and "/workbench/login" in anonymous.headers["location"]
    with _signed_in(hub, "health") as client:
        assert client.get("/workbench/quality/docs/index.html").status_code == 200
        assert client.get("/workbench/quality/docs").headers["location"] == "/workbench/quality/docs/index.html"
        cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
        # sent as written (an HTTP client would tidy the dots away): the server sees every ".." and "%2e%2e"
        for path in ("link_out.html", "../../../great_expectations.yml", "%2e%2e/%2e%2e/%2e%2e/great_expectations.yml",
                     "..%2F..%2F..%2Fgreat_expectations.yml", "static/../../../../great_expectations.yml",
                     ".hidden.html", "nothing.html", "static/vendor/MANIFEST.json/x", "index.py", "validations"):
            status, body = _raw_get(hub["base"], f"/workbench/quality/docs/{path}", cookie)
            assert status == 404, (path, status)
            assert b"not part of the Data Docs" not in body and b"datasources" not in body
        font = client.get("/workbench/quality/docs/static/vendor/fontawesome-free-6.6.0/webfonts/fa-solid-900.woff2")
        assert font.status_code == 200 and font.headers["content-type"] == "font/woff2"
    with hub["engine"].connect() as conn:
        logged = conn.execute(sa.text("SELECT endpoint, status FROM audit.access_log WHERE endpoint LIKE"
                                      " 'GET /workbench/quality/docs/%' ORDER BY access_id")).all()
    assert ("GET /workbench/quality/docs/index.html", 200) in logged and ("GET /workbench/quality/docs/index.html", 303) in logged


def test_the_quality_pages_data_docs_and_api_docs_draw_with_the_network_cut_off(hub):
    """In Chromium: the Data Docs index's table lists the runs (built by its scripts), a validation page draws its
    status icons in Font Awesome, /docs lists the API's routes, and no request left 127.0.0.1."""
    base = hub["base"]
    with open_browser() as browser:
        page = browser.new_page()
        sign_in(page, base, hub["keys"]["auditor"], "/workbench/quality/")
        assert page.locator("#history tbody tr").count() == 6
        page.screenshot(path=str(artefact_path("quality_overview.png")), full_page=True)

        page.click("#data-docs")
        page.wait_for_selector("table.ge-index-page-validation-results-table tbody tr[data-index]")
        runs = page.locator("table.ge-index-page-validation-results-table tbody tr[data-index]")
        assert runs.count() >= 4  # two gate runs × two table suites, drawn by bootstrap-table
        assert page.locator("table.ge-index-page-validation-results-table i.fa-check-circle").count() >= 2
        page.screenshot(path=str(artefact_path("data_docs_index.png")), full_page=True)

        page.goto(f"{base}/workbench/quality/")
        page.locator("#history a.docs-link").first.click()
        page.wait_for_load_state("load")
        icon = page.locator("i.fas").first
        icon.wait_for()
        family = icon.evaluate("e => getComputedStyle(e).fontFamily")
        assert "Font Awesome" in family, family
        loaded = page.evaluate("""async () => { await document.fonts.ready;
            return [...document.fonts].filter(f => f.family.includes('Font Awesome') && f.status === 'loaded').length }""")
        assert loaded >= 1, "the icon font did not load"
        glyph = icon.evaluate("e => getComputedStyle(e, '::before').content")
        assert glyph not in ("none", "normal", ""), glyph
        assert icon.bounding_box()["width"] > 4
        page.screenshot(path=str(artefact_path("data_docs_validation.png")), full_page=True)

        page.goto(f"{base}/docs")
        page.wait_for_selector('.opblock-summary-path[data-path="/v1/persons/search"]')
        assert page.get_by_text("/v1/persons/search", exact=True).first.is_visible()
        assert page.locator(".opblock").count() >= 5
        page.screenshot(path=str(artefact_path("api_docs.png")), full_page=True)
        assert not [e for e in browser.console_errors if "Content Security Policy" in e], browser.console_errors
        assert browser.blocked == []

        # ReDoc's bundle asks for its attribution logo from cdn.redoc.ly: the page's policy refuses it in the browser
        page.goto(f"{base}/redoc")
        page.get_by_text("/v1/persons/search").first.wait_for(state="attached")
        for _ in range(50):
            if browser.blocked or any("cdn.redoc.ly" in e for e in browser.console_errors):
                break
            page.wait_for_timeout(100)
        assert browser.blocked == []
        assert [e for e in browser.console_errors if "cdn.redoc.ly" in e], "ReDoc drew without asking for its logo?"
