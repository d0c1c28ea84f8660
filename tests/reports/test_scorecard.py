"""The per-department data-quality scorecard, rendered by a real headless Chromium.

A warehouse is filled through the real pipeline from the simulated platforms; source-gate runs
(one failing, one passing after an earlier failure) are written into the validation history
beside the ``master_index`` run that :func:`hub.pipeline.run_gate` records. The scorecard is
then checked as Chromium sees it (DOM and screenshot), and the HTML is scanned for every name,
ID number and phone of the persons the simulated platforms served.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.registry import load_registry
from reports.scorecard import THRESHOLDS, build_scorecard, collect_scorecard
from tests.browser import colour_census, dump_dom, png_size, read_png, require_browser, screenshot
from tests.helpers import publish_day0

CHINA = dt.timezone(dt.timedelta(hours=8))
FAILING_SOURCE = "mz_dibao"  # its latest source-gate run fails
RECOVERED_SOURCE = "rs_yiliao"  # failed once, then passed
FAILING_EXPECTATION = "expect_column_values_to_match_regex"
OLD_EXPECTATION = "expect_column_pair_values_a_to_be_greater_than_b"  # only in the superseded run
BIRTHS_THRESHOLDS = {"wj_chusheng": {"id_valid_red": 0.30}}
RED = (0xD9, 0x30, 0x25)
GREEN = (0x1E, 0x8E, 0x3E)


def _departments() -> tuple[dict[str, list[str]], dict[str, str]]:
    departments: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    for name, source in load_registry().items():
        departments.setdefault(source.department, []).append(name)
        titles[name] = source.title
    return departments, titles


def _insert_results(conn, run_id: int, results: list[dict], suite: str | None = None, start: int = 0) -> None:
    for position, r in enumerate(results, start):
        conn.execute(sa.text(
            "INSERT INTO audit.validation_result (run_id, position, expectation, table_name, column_name, success,"
            f" observed, unexpected_count, unexpected_percent{', suite' if suite else ''})"
            " VALUES (:run, :pos, :expectation, 'std.resident', :column, :success, :observed, :count, :percent"
            f"{', :suite' if suite else ''})"),
            {"run": run_id, "pos": position, "count": None, "percent": None, "observed": None, "suite": suite, **r})


def _record_run(conn, suite: str, started_at: dt.datetime, results: list[dict], docs_path: str | None = None) -> int:
    """A run of one suite: one audit.validation_run named after the suite."""
    failed = sum(1 for r in results if not r["success"])
    run_id = conn.execute(sa.text(
        "INSERT INTO audit.validation_run (suite, started_at, success, evaluated, successful, failed, docs_path)"
        " VALUES (:suite, :at, :ok, :n, :good, :bad, :docs) RETURNING run_id"),
        {"suite": suite, "at": started_at, "ok": failed == 0, "n": len(results), "good": len(results) - failed,
         "bad": failed, "docs": docs_path}).scalar_one()
    _insert_results(conn, run_id, results)
    return run_id


def _record_gate_run(conn, started_at: dt.datetime, suites: dict[str, list[dict]], docs_path: str | None = None) -> int:
    """A gate run of several suites: audit.validation_suite rows, results marked with their suite."""
    results = [r for rs in suites.values() for r in rs]
    run_id = _record_run(conn, "publish_gate", started_at, [], docs_path)
    failed = sum(1 for r in results if not r["success"])
    conn.execute(sa.text(
        "UPDATE audit.validation_run SET success = :ok, evaluated = :n, successful = :good, failed = :bad"
        " WHERE run_id = :run"), {"ok": failed == 0, "n": len(results), "good": len(results) - failed, "bad": failed,
                                  "run": run_id})
    position = 0
    for suite, rs in suites.items():
        bad = sum(1 for r in rs if not r["success"])
        conn.execute(sa.text(
            "INSERT INTO audit.validation_suite (run_id, suite, success, evaluated, successful, failed, row_count)"
            " VALUES (:run, :suite, :ok, :n, :good, :bad, NULL)"),
            {"run": run_id, "suite": suite, "ok": bad == 0, "n": len(rs), "good": len(rs) - bad, "bad": bad})
        _insert_results(conn, run_id, rs, suite, position)
        position += len(rs)
    return run_id


def _served_pii(county) -> set[str]:
    """Every name, ID number and phone the platforms served: the population's and the values as served."""
    registry = load_registry()
    truth = county.truth()
    persons = county.population[county.population["person_id"].isin(truth["person_id"])]
    values = set(persons["name"].dropna()) | set(persons["id_number"].dropna())
    values |= set(persons["mobile"].dropna()) | set(persons["phone"].dropna())
    for name, source in registry.items():
        served = county.served(name)
        for canonical in ("name", "id_number", "phone"):
            column = source.mapping.get(canonical)
            if column in served:
                values |= {str(v).strip() for v in served[column].dropna()}
    # a value shorter than a two-character name is no personal datum (e.g. '无', '/', '0')
    return {v for v in map(str, values) if len(v) >= 2 and not re.fullmatch(r"[\W_0]*|无|不详|未知|暂无|NULL", v)}


@pytest.fixture
def browser() -> str:
    """A headless Chromium, or a skip naming the package to install (before any warehouse is filled)."""
    return require_browser()


@pytest.fixture
def filled_warehouse(clean_warehouse, platforms, county):
    """Every simulated source ingested, standardized, matched, gated and published."""
    return publish_day0(clean_warehouse, platforms, county)["gate"]


def test_scorecard_of_a_filled_warehouse_renders_in_chromium(browser, filled_warehouse, clean_warehouse, county,
                                                            tmp_path):
    gate = filled_warehouse
    docs_index = Path(gate["docs"])
    assert docs_index.is_file(), "run_gate() left no Data Docs index"
    departments, source_titles = _departments()
    served_ids = set(county.truth()["person_id"])
    person = county.population[county.population["person_id"].isin(served_ids)].dropna(subset=["id_number"]).iloc[0]

    with clean_warehouse.begin() as conn:
        gate_at = conn.execute(sa.text("SELECT started_at FROM audit.validation_run WHERE run_id = :r"),
                               {"r": gate["validation_run_id"]}).scalar_one()
        # a source that failed once (a run of its own suite) and has passed since (in a gate run of several
        # suites): only the newer run counts
        _record_run(conn, f"source.{RECOVERED_SOURCE}", gate_at + dt.timedelta(seconds=1), [
            {"expectation": OLD_EXPECTATION, "column": "birth_date", "success": False, "observed": "1 unexpected"}])
        # a gate run whose suite for one source failed, with an observed value that quotes an ID number and a
        # name (must be withheld)
        _record_gate_run(conn, gate_at + dt.timedelta(seconds=2), {
            f"source.{FAILING_SOURCE}": [
                {"expectation": "expect_column_values_to_not_be_null", "column": "source_record_id", "success": True},
                {"expectation": FAILING_EXPECTATION, "column": "id_number", "success": False,
                 "observed": "12 of 480 non-null values unexpected (2.50%)", "count": 12, "percent": 2.5},
                {"expectation": "expect_column_values_to_be_in_set", "column": "sex", "success": False,
                 "observed": f"e.g. {person['id_number']} {person['name']}", "count": 3, "percent": 0.625}],
            f"source.{RECOVERED_SOURCE}": [
                {"expectation": OLD_EXPECTATION, "column": "birth_date", "success": True, "observed": "0 unexpected"}],
        }, docs_path=str(docs_index))
        # a quarantined record whose payload and detail hold personal data: only its reason code may show
        batch = conn.execute(sa.text("SELECT max(batch_id) FROM raw.load_batch WHERE source = :s"),
                             {"s": FAILING_SOURCE}).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO raw.quarantine (batch_id, source, source_record_id, reason_code, detail, payload)"
            " VALUES (:b, :s, NULL, 'missing_primary_key', :detail, :payload)"),
            {"b": batch, "s": FAILING_SOURCE, "detail": f"no id for {person['name']}",
             "payload": f'{{"sfzh": "{person["id_number"]}", "xm": "{person["name"]}"}}'})

    with clean_warehouse.connect() as conn:
        card = collect_scorecard(conn, departments, source_titles=source_titles, now=dt.datetime.now(CHINA))
        # newborns have no ID number yet: birth registrations are held to a lower ID-validity floor
        page = build_scorecard(conn, docs_index.parent, departments, {"civil_affairs": "民政 civil affairs"},
                               source_titles=source_titles, source_thresholds=BIRTHS_THRESHOLDS,
                               now=dt.datetime.now(CHINA))
        relaxed = collect_scorecard(conn, departments, source_thresholds=BIRTHS_THRESHOLDS)
        std = pd.read_sql(sa.text(
            "SELECT source, count(*) AS records,"
            " count(*) FILTER (WHERE id_number_status IN ('valid', 'upgraded_from_15')) AS id_valid"
            " FROM std.resident GROUP BY source"), conn).set_index("source")
    assert page == docs_index.parent / "scorecard.html"

    # the figures: every source of every department, as counted in std.resident
    sources = {s.source: s for d in card.departments for s in d.sources}
    assert [d.key for d in card.departments] == list(departments)
    assert set(sources) == {n for names in departments.values() for n in names}
    for name, s in sources.items():
        assert s.records == std.loc[name, "records"] == len(county.served(name, include_deleted=False)), name
        assert s.id_valid == std.loc[name, "id_valid"], name
        assert 0 < s.id_valid_rate <= 1 and s.received >= s.records
    assert sources[FAILING_SOURCE].light == "red" and sources[FAILING_SOURCE].quarantined == 1
    assert sources[FAILING_SOURCE].gate.failed == 2 and not sources[FAILING_SOURCE].gate.success
    assert sources[RECOVERED_SOURCE].gate.success and sources[RECOVERED_SOURCE].light != "grey"
    assert card.master_index is not None and card.master_index.run_id == gate["validation_run_id"]
    assert card.master_index.success and card.release["release_no"] == 1
    assert card.publish_attempt["outcome"] == "published"
    civil = next(d for d in card.departments if d.key == "civil_affairs")
    assert civil.light == "red"
    births = sources["wj_chusheng"]
    assert births.id_valid_rate < THRESHOLDS["id_valid_red"] and births.light == "red"
    relaxed_births = next(s for d in relaxed.departments for s in d.sources if s.source == "wj_chusheng")
    assert relaxed_births.light == "amber" and relaxed_births.thresholds["id_valid_red"] == 0.30

    # as the browser sees it
    text = page.read_text(encoding="utf-8")
    # no personal datum of any served person in the page, nor in what the browser made of it (checked first;
    # assertions below name the strings they miss, never print the page)
    dom = dump_dom(page)
    pii = _served_pii(county)
    covered = person["id_number"] in pii and person["name"] in pii
    assert covered and len(pii) > 5000, "the scan misses the served population"
    leaked = sum(1 for v in pii if v in text or v in dom)
    assert not leaked, f"{leaked} personal values found in the scorecard (not shown)"

    assert not _absent(text, ['<html lang="zh-CN">', '<meta charset="utf-8">'])
    assert "<script" not in text.lower(), "the page must need no JavaScript"
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text), "the page must not load network resources"
    assert not _absent(dom, ["民政 civil affairs", "卫健/计生 health and family planning", "人社 social security"])
    assert not _absent(dom, [f'id="src-{name}"' for name in sources] + [f"<code>{name}</code>" for name in sources])
    assert not _absent(dom, [FAILING_EXPECTATION, "expect_column_values_to_be_in_set", "missing_primary_key",
                             'href="index.html"', "master_index", "12 of 480 non-null values unexpected (2.50%)",
                             "withheld", "How the grade is computed", f"{THRESHOLDS['id_valid_green'] * 100:.1f}%",
                             "per-source thresholds", "ID validity below which red 30.0%"])
    assert OLD_EXPECTATION not in dom, "a superseded run's failure is listed"

    png = screenshot(page, tmp_path / "scorecard.png")
    assert png_size(png) == (1280, 2000)
    census = colour_census(read_png(png))
    background = max(census.values())
    assert len(census) > 50 and background < 0.97 * sum(census.values()), "the screenshot looks blank"
    assert _near(census, RED) > 20, "no red traffic light in the screenshot"
    assert _near(census, GREEN) + _near(census, (0xF2, 0x99, 0x00)) > 20, "no green or amber light in the screenshot"

    # the GX Data Docs index that run_gate() left (and the scorecard links to) renders too
    with clean_warehouse.connect() as conn:
        stored = conn.execute(sa.text("SELECT docs_path FROM audit.validation_run WHERE run_id = :r"),
                              {"r": gate["validation_run_id"]}).scalar_one()
    assert Path(stored) == docs_index
    docs_dom = dump_dom(docs_index)
    assert not _absent(docs_dom, ["master_index"])
    docs_png = screenshot(docs_index, tmp_path / "data_docs.png")
    assert png_size(docs_png) == (1280, 2000)
    # Data Docs load jQuery, Bootstrap and their tables from CDNs (GX has no offline build): without a network only
    # the page's own text shows, so "renders" means text on a page, not the styled tables
    docs_census = colour_census(read_png(docs_png))
    assert len(docs_census) > 20 and max(docs_census.values()) < 0.998 * sum(docs_census.values())


def _absent(haystack: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n not in haystack]


def _near(census: dict[tuple[int, ...], int], colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return sum(n for px, n in census.items() if all(abs(a - b) <= tolerance for a, b in zip(px[:3], colour)))


def test_scorecard_of_an_empty_warehouse(browser, clean_warehouse, tmp_path):
    """No validation run yet, sources without rows, and titles that need escaping."""
    departments = {"civil_affairs": ["mz_dibao", "mz_gaoling"], "<b>dept</b>": ["x_&_y"]}
    titles = {"<b>dept</b>": '<img src="x"> & "quoted"'}
    with clean_warehouse.connect() as conn:
        card = collect_scorecard(conn, departments, titles, now=dt.datetime.now(CHINA))
        page = build_scorecard(conn, tmp_path, departments, titles, now=dt.datetime.now(CHINA))
    assert [d.light for d in card.departments] == ["grey", "grey"]
    assert all(s.records == 0 and s.id_valid_rate is None and s.gate is None for d in card.departments for s in d.sources)
    assert card.master_index is None and card.release is None and card.publish_attempt is None
    assert card.validation_runs == 0
    with clean_warehouse.connect() as conn, pytest.raises(ValueError, match="unknown key"):
        collect_scorecard(conn, departments, source_thresholds={"mz_dibao": {"id_valid": 0.5}})

    text = page.read_text(encoding="utf-8")
    assert "<b>dept</b>" not in text and "<img" not in text and "&lt;img src=&quot;x&quot;&gt; &amp; &quot;quoted&quot;" in text
    dom = dump_dom(page)
    assert "<img" not in dom and "<b>dept</b>" not in dom
    assert "No validation run has been recorded yet" in dom
    assert "no release published yet" in dom and "the master_index gate has not run yet" in dom
    for name in ("mz_dibao", "mz_gaoling", "x_&amp;_y"):
        assert name in dom
    png = screenshot(page, tmp_path / "empty.png")
    assert png_size(png) == (1280, 2000)
    assert len(colour_census(read_png(png))) > 20
