"""Per-department scorecards with charts, on a warehouse filled and published twice by the real pipeline.

One module fixture runs the pipeline on day 0 (release 1), builds the pages before any audit ran,
runs it again on day 1 (release 2), records audit findings for both releases (written directly
into ``audit.finding`` / ``audit.finding_count``, so the figures do not depend on how the audits
detect them) and builds the pages again. The tests check the figures against independent SQL and
pandas counts and the simulator's truth, that each page holds only its own department's sources,
that the charts decode and show something, that Chromium renders the page, and that no served
name or ID number is on it.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
from itertools import combinations

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.registry import load_registry
from reports import charts as chart_kit
from reports.department_figures import collect_department_scorecards
from reports.department_scorecard import build_department_scorecards, render_charts
from tests.browser import colour_census, dump_dom, png_size, read_png, require_browser, screenshot
from tests.helpers import publish_day0, publish_served_county

CHINA = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 23, 9, 30, tzinfo=CHINA)
IMG = re.compile(r'<img class="chart" data-chart="(\w+)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
# findings recorded for the test: (kind, department, open in release 2?) — per release, counted in audit.finding_count
FINDINGS = [("sex_conflict", "health", True), ("sex_conflict", "health", True), ("shared_id_number", "health", True),
            ("deceased_active", "social_security", True), ("exclusive_programs", "social_security", False),
            ("birth_date_conflict", "civil_affairs", False)]


def _departments() -> tuple[dict[str, list[str]], dict[str, str]]:
    registry = load_registry()
    departments: dict[str, list[str]] = {}
    for name, source in registry.items():
        departments.setdefault(source.department, []).append(name)
    return departments, {name: source.title for name, source in registry.items()}


def _release() -> int:
    return publish_served_county()["release_no"]


def _record_findings(engine, releases: tuple[int, int]) -> None:
    """Findings of both releases: all open in release 1; in release 2 those marked so, the rest resolved."""
    with engine.begin() as conn:
        masters = conn.execute(sa.text("SELECT master_id FROM mpi.golden ORDER BY master_id LIMIT :n"),
                               {"n": len(FINDINGS)}).scalars().all()
        for i, ((kind, department, still_open), master) in enumerate(zip(FINDINGS, masters)):
            conn.execute(sa.text(
                "INSERT INTO audit.finding (finding_id, kind, department, master_id, summary, evidence, first_release,"
                " last_release, status) VALUES (:id, :kind, :d, :m, :summary, '[]', :first, :last, :status)"),
                {"id": f"F{i:04d}", "kind": kind, "d": department, "m": master, "summary": f"test finding {kind}",
                 "first": releases[0], "last": releases[1] if still_open else releases[0],
                 "status": "open" if still_open else "resolved"})
        for n, release in enumerate(releases):
            for department in ("civil_affairs", "health", "social_security"):
                for kind in ("deceased_active", "exclusive_programs", "sex_conflict", "birth_date_conflict",
                             "shared_id_number"):
                    count = sum(1 for k, d, still_open in FINDINGS
                                if k == kind and d == department and (n == 0 or still_open))
                    conn.execute(sa.text(
                        "INSERT INTO audit.finding_count (release_no, kind, department, findings)"
                        " VALUES (:r, :k, :d, :n)"), {"r": release, "k": kind, "d": department, "n": count})


@pytest.fixture(scope="module")
def built(engine, _served_platforms, county, tmp_path_factory):
    require_browser()  # skip before filling a warehouse when there is no browser
    platforms = _served_platforms
    departments, source_titles = _departments()
    out = tmp_path_factory.mktemp("department_scorecards")
    try:
        first = publish_day0(engine, platforms, county)["release_no"]
        with engine.connect() as conn:
            before_audit = build_department_scorecards(conn, out / "release1", departments,
                                                       source_titles=source_titles, now=NOW)
            before_text = {k: p.read_text(encoding="utf-8") for k, p in before_audit.items()}
            before_cards = collect_department_scorecards(conn, departments, now=NOW)
        day1 = county.next_day()
        platforms.advance(day1)
        second = _release()
    finally:
        platforms.advance(county)
    assert (first, second) == (1, 2)
    _record_findings(engine, (first, second))
    with engine.connect() as conn:
        paths = build_department_scorecards(conn, out, departments, source_titles=source_titles, now=NOW)
        cards = collect_department_scorecards(conn, departments, source_titles=source_titles, now=NOW)
    return {"departments": departments, "paths": paths, "cards": cards, "day0": county, "day1": day1,
            "before_text": before_text, "before_cards": before_cards, "out": out,
            "text": {k: p.read_text(encoding="utf-8") for k, p in paths.items()}}


def _sql(engine, query: str, **params) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text(query), conn, params=params)


def test_figures_match_the_warehouse_and_the_simulator(built, engine):
    departments, cards, day0, day1 = built["departments"], built["cards"], built["day0"], built["day1"]
    assert set(built["paths"]) == set(departments) == {"civil_affairs", "health", "social_security"}
    for key, path in built["paths"].items():
        assert path == built["out"] / f"scorecard_{key}.html"
    std = _sql(engine, "SELECT source, id_number_status FROM std.resident")
    xw = _sql(engine, "SELECT c.source, c.source_record_id, c.master_id FROM mpi.crosswalk c"
                      " JOIN std.resident r USING (source, source_record_id)")
    truth = day1.truth()
    truth = truth[~truth["deleted"]]
    department_of = {s: k for k, sources in departments.items() for s in sources}

    for key, sources in departments.items():
        card = cards[key]
        assert card.source_names == sources and card.current_release == 2
        # validity: records and usable ID numbers per source, as std holds them and the platforms served them
        for s in card.sources:
            mine = std[std["source"] == s.source]
            assert s.records == len(mine) == len(day1.served(s.source, include_deleted=False))
            assert s.id_valid == mine["id_number_status"].isin(["valid", "upgraded_from_15"]).sum()
            assert s.id_statuses == mine["id_number_status"].value_counts().to_dict()
        # duplicates within a source: records sharing a master id
        for d in card.duplicates:
            mine = xw[xw["source"] == d.source]
            per_master = mine.groupby("master_id").size()
            assert (d.records, d.masters) == (len(mine), mine["master_id"].nunique())
            assert d.duplicate_masters == (per_master > 1).sum()
            assert d.duplicate_records == (per_master - 1).sum()
            # against the truth: the planted same-person records of the source; a merge never joins two persons
            persons = truth[truth["source"] == d.source].groupby("person_id").size()
            planted = int((persons - 1).sum())
            assert d.duplicate_records <= planted
            assert d.duplicate_records >= 0.8 * planted, (d.source, d.duplicate_records, planted)
        # across the department's own sources
        own = xw[xw["source"].isin(sources)]
        spread = own.groupby("master_id")["source"].nunique()
        assert card.cross_source_masters == (spread > 1).sum()
        pairs = own.drop_duplicates(["source", "master_id"]).groupby("master_id")["source"].apply(set)
        for (a, b), n in card.overlaps.items():
            assert n == sum(1 for held in pairs if {a, b} <= held), (a, b)
        assert list(card.overlaps) == list(combinations(sources, 2))
    assert sum(c.duplicate_records for c in cards.values()) > 0 and any(c.cross_source_masters for c in cards.values())

    # conflicts with other departments, recomputed in pandas from mpi.golden_conflict
    gc = _sql(engine, "SELECT master_id, field, value, chosen, sources FROM mpi.golden_conflict"
                      " WHERE field IN ('name', 'sex', 'birth_date')")
    assert len(gc), "the county should give name conflicts"
    seen_conflict = False
    for key, card in cards.items():
        for c in card.conflicts:
            rows = gc[gc["field"] == c.field]
            hits, not_chosen, by_dept, by_source = set(), 0, {}, {}
            for master, group in rows.groupby("master_id"):
                values = list(group.itertuples())
                found = False
                for a in values:
                    for b in values:
                        if a.value == b.value:
                            continue
                        for ms in (s for s in a.sources if department_of[s] == key):
                            for os_ in (s for s in b.sources if department_of[s] != key):
                                found = True
                                by_dept.setdefault(department_of[os_], set()).add(master)
                                by_source.setdefault(ms, set()).add(master)
                if found:
                    hits.add(master)
                    if not any(v.chosen and any(department_of[s] == key for s in v.sources) for v in values):
                        not_chosen += 1
            assert c.masters == len(hits), (key, c.field)
            assert c.not_chosen == not_chosen, (key, c.field)
            assert c.by_department == {k: len(v) for k, v in by_dept.items()}, (key, c.field)
            assert c.by_source == {k: len(v) for k, v in by_source.items()}, (key, c.field)
            seen_conflict |= c.masters > 0
    assert seen_conflict, "no department shows a cross-department conflict"

    # open findings owned by the department
    for key, card in cards.items():
        assert card.audited and card.last_audited_release == 2
        expected: dict[str, int] = {}
        for kind, department, still_open in FINDINGS:
            if department == key and still_open:
                expected[kind] = expected.get(kind, 0) + 1
        assert card.open_findings == expected, key
    assert cards["civil_affairs"].open_findings == {}

    # the trend: one point per release
    enrol = _sql(engine, "SELECT release_no, source, master_id FROM publish.enrolment")
    for key, card in cards.items():
        assert [p.release_no for p in card.trend] == [1, 2]
        for p, day in zip(card.trend, (day0, day1)):
            mine = enrol[(enrol["release_no"] == p.release_no) & enrol["source"].isin(card.source_names)]
            assert p.records == {s: int((mine["source"] == s).sum()) for s in card.source_names}
            assert p.records == {s: len(day.served(s, include_deleted=False)) for s in card.source_names}
            assert p.gate_rows == p.records  # the gate saw what was published
            assert p.masters == mine["master_id"].nunique()
            assert p.duplicate_records == sum(int((g.groupby("master_id").size() - 1).sum())
                                              for _, g in mine.groupby("source"))
            assert p.cross_source_masters == int((mine.groupby("master_id")["source"].nunique() > 1).sum())
            expected = {}
            for kind, department, still_open in FINDINGS:
                if department == key and (p.release_no == 1 or still_open):
                    expected[kind] = expected.get(kind, 0) + 1
            assert {k: v for k, v in p.findings.items() if v} == expected
        last = card.trend[-1]
        # the current release was gated on today's std: its validity is the scorecard's
        assert last.id_valid_rate == pytest.approx(card.card.id_valid_rate)
        assert last.duplicate_records == card.duplicate_records
        assert last.cross_source_masters == card.cross_source_masters
        for s in card.sources:
            assert last.source_id_valid_rate(s.source) == pytest.approx(s.id_valid_rate)
    first = cards["health"].trend[0]
    assert first.source_id_valid_rate("wj_chusheng") < 0.9  # newborns have no ID number yet


def test_the_trend_shows_the_latest_releases_only(built, engine, monkeypatch):
    """A hub publishing daily does not count a year of releases again on every run: the trend holds the latest
    TREND_RELEASES releases, read from those releases alone, with the same figures as in the whole trend."""
    from reports import department_figures

    assert "最近 30 个版本 the latest 30 releases" in built["text"]["health"]
    monkeypatch.setattr(department_figures, "TREND_RELEASES", 1)
    with engine.connect() as conn:
        cards = collect_department_scorecards(conn, built["departments"], now=NOW)
    for key, card in cards.items():
        assert [p.release_no for p in card.trend] == [2], key
        whole = built["cards"][key].trend[-1]
        assert (card.trend[0].records, card.trend[0].masters, card.trend[0].duplicate_records,
                card.trend[0].cross_source_masters) == (whole.records, whole.masters, whole.duplicate_records,
                                                         whole.cross_source_masters), key


def test_each_release_is_counted_once_and_its_figures_kept(built, engine):
    """A release's enrolments never change, so the trend counts its figures once per set of sources, keeps them in
    audit.enrolment_figure when the reader commits, and reads them from there afterwards."""
    from warehouse import quality

    departments = built["departments"]
    keys = {k: ",".join(sorted(mine)) for k, mine in departments.items()}
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit.enrolment_figure"))
    with engine.connect() as conn:  # a reader that does not commit keeps nothing
        counted = {k: quality.enrolment_per_release(conn, mine) for k, mine in departments.items()}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit.enrolment_figure")).scalar_one() == 0
    assert all(set(c["masters"]) == {1, 2} for c in counted.values()), counted
    with engine.begin() as conn:
        assert {k: quality.enrolment_per_release(conn, mine) for k, mine in departments.items()} == counted
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT release_no, sources FROM audit.enrolment_figure")).all()
        assert sorted(kept) == sorted((n, key) for n in (1, 2) for key in keys.values())
        # read from the table from then on: a figure changed there is what the trend shows
        conn.execute(sa.text("UPDATE audit.enrolment_figure SET masters = masters + 1000"
                             " WHERE release_no = 1 AND sources = :k"), {"k": keys["health"]})
        again = quality.enrolment_per_release(conn, departments["health"])
        assert again["masters"] == {1: counted["health"]["masters"][1] + 1000, 2: counted["health"]["masters"][2]}
        assert quality.enrolment_per_release(conn, departments["health"], since=2)["masters"] == {
            2: counted["health"]["masters"][2]}
        conn.rollback()
    # another set of sources is counted on its own
    with engine.connect() as conn:
        alone = quality.enrolment_per_release(conn, departments["health"][:1])
    assert set(alone["records"][2]) == {departments["health"][0]}


def test_each_page_holds_only_its_own_sources(built):
    departments = built["departments"]
    everything = {s for sources in departments.values() for s in sources}
    for key, text in built["text"].items():
        own = set(departments[key])
        for source in own:
            assert f"<code>{source}</code>" in text and f'id="src-{source}"' in text, (key, source)
        for source in everything - own:
            assert source not in text, f"{source} is on the page of {key}"
        assert f'data-department="{key}"' in text
        assert "<script" not in text.lower()
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text), "no network resources"
        assert '<html lang="zh-CN">' in text and '<meta charset="utf-8">' in text
        # the other departments are named (as conflict counterparts) only by their title, never with their sources
        assert 'href="scorecard.html"' not in text  # no all-department page was written beside these
    # before any audit, the pages say so; after, they do not
    for key, text in built["before_text"].items():
        assert "no audit run yet" in text, key
        assert not built["before_cards"][key].audited and built["before_cards"][key].open_findings == {}
        assert [p.findings for p in built["before_cards"][key].trend] == [None]
    for text in built["text"].values():
        assert "no audit run yet" not in text
    assert "sex_conflict" in built["text"]["health"] and "shared_id_number" in built["text"]["health"]
    assert "no open findings owned by this department" in built["text"]["civil_affairs"]


def test_charts_decode_and_are_not_blank(built):
    from PIL import Image

    for key, text in built["text"].items():
        charts = dict(IMG.findall(text))
        assert set(charts) == {"quality", "issues", "trend"}, key
        for chart, data in charts.items():
            with Image.open(io.BytesIO(base64.b64decode(data))) as image:
                image.load()
                assert image.format == "PNG" and image.width >= 1000 and image.height >= 200, (key, chart)
                rgb = image.convert("RGB")
                colours = rgb.getcolors(maxcolors=1 << 20)
                white = sum(n for n, c in colours if min(c) >= 250)
                assert len(colours) > 50, (key, chart, "too few colours")
                assert white < 0.97 * rgb.width * rgb.height, (key, chart, "nearly blank")
                # the bars and lines are drawn in colour, not only text and axes
                coloured = sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 60)
                assert coloured > 500, (key, chart, "no coloured marks")


def test_chromium_renders_the_page(built, tmp_path):
    page = built["paths"]["health"]
    dom = dump_dom(page)
    assert "卫健/计生 health and family planning" in dom
    assert len(re.findall(r'<img class="chart"[^>]*src="data:image/png;base64,', dom)) == 3
    for heading in ("Validity and completeness", "Duplicates within the department",
                    "Conflicts with other departments", "Trend across releases"):
        assert heading in dom
    png = screenshot(page, tmp_path / "scorecard_health.png")
    assert png_size(png) == (1280, 2000)
    census = colour_census(read_png(png))
    assert len(census) > 200 and max(census.values()) < 0.9 * sum(census.values()), "the screenshot looks blank"


def _served_pii(county) -> set[str]:
    """Every name and ID number the platforms served: the population's and the values as served."""
    registry = load_registry()
    truth = county.truth()
    persons = county.population[county.population["person_id"].isin(truth["person_id"])]
    values = set(persons["name"].dropna()) | set(persons["id_number"].dropna())
    for name, source in registry.items():
        served = county.served(name)
        for canonical in ("name", "id_number"):
            column = source.mapping.get(canonical)
            if column in served:
                values |= {str(v).strip() for v in served[column].dropna()}
    return {v for v in map(str, values) if len(v) >= 2 and not re.fullmatch(r"[\W_0]*|无|不详|未知|暂无|NULL", v)}


def test_no_name_or_id_number_on_any_page(built):
    pii = _served_pii(built["day0"]) | _served_pii(built["day1"])
    person = built["day1"].population.dropna(subset=["id_number"]).iloc[0]
    assert person["id_number"] in pii and person["name"] in pii and len(pii) > 5000
    pages = [*built["text"].values(), *built["before_text"].values()]
    leaked = sum(1 for v in pii for text in pages if v in text)
    assert not leaked, f"{leaked} personal values found on the department pages (not shown)"
    dom = dump_dom(built["paths"]["social_security"])
    assert not sum(1 for v in pii if v in dom)


def test_empty_department_escaping_and_english_fallback(clean_warehouse, tmp_path, monkeypatch):
    from PIL import Image

    departments = {"civil_affairs": ["mz_dibao"], "x-dept": ["x_&_y"]}
    titles = {"x-dept": '<img src="x"> & "quoted"'}
    with clean_warehouse.connect() as conn:
        with pytest.raises(ValueError, match="cannot name a file"):
            build_department_scorecards(conn, tmp_path, {"../etc": ["a"]})
        monkeypatch.setattr(chart_kit, "cjk_font", lambda: None)  # no CJK font installed: English labels
        paths = build_department_scorecards(conn, tmp_path, departments, titles, now=NOW)
        card = collect_department_scorecards(conn, departments, titles, now=NOW)["x-dept"]
    assert card.trend == [] and card.duplicates[0].records == 0 and card.cross_source_masters == 0
    assert not card.audited and card.conflict_masters == 0
    text = paths["x-dept"].read_text(encoding="utf-8")
    assert '<img src="x">' not in text and "&lt;img src=&quot;x&quot;&gt; &amp; &quot;quoted&quot;" in text
    assert "x_&amp;_y" in text and "no audit run yet" in text and "no release published yet" in text
    charts = dict(IMG.findall(text))
    assert set(charts) == {"quality", "issues", "trend"}
    for data in charts.values():
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert len(image.convert("RGB").getcolors(1 << 20)) > 10  # the "no data" text is drawn
    assert "mz_dibao" not in text and "mz_dibao" in paths["civil_affairs"].read_text(encoding="utf-8")
    assert set(render_charts(card)) == {"quality", "issues", "trend"}


def test_a_cjk_font_is_found():
    font = chart_kit.cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (Debian: fonts-noto-cjk); the charts fall back to English labels")
    assert "CJK" in font or "Han" in font or "Hei" in font or "YaHei" in font
