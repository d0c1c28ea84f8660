"""Statistical reports (统计报表) from the published index, reconciled with SQL counts of the release.

The county is ingested, matched and published once for the module. Every kind is written for the
county, one town and one village; each figure read back from the XLSX form is compared with a count
written here, independently, in SQL against publish.master_person / publish.enrolment.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from connectors.registry import load_registry
from reports import ledgers, statistics
from reports.errors import StatisticsError
from reports.stat_form import SUPPRESSED

AS_OF = dt.date(2026, 11, 21)
KINDS = list(statistics.shipped_statistics().kinds)

# the golden address's town and village, and else the person's first record's (by source, record)
PLACE = """
WITH first_record AS (
  SELECT DISTINCT ON (e.master_id) e.master_id, e.address_town, e.address_village
  FROM publish.enrolment e WHERE e.release_no = :n AND e.address_town IS NOT NULL {record_filter}
  ORDER BY e.master_id, e.source, e.source_record_id),
placed AS (
  SELECT p.*, date_part('year', age(CAST(:as_of AS date), p.birth_date)) AS years,
    CASE WHEN p.address IS NULL THEN r.address_town
         ELSE (regexp_match(regexp_replace(p.address, '[0-9].*$', ''), '([^县区市省]+?(镇|乡|街道))'))[1] END AS town,
    CASE WHEN p.address IS NULL THEN r.address_village
         ELSE (regexp_match(regexp_replace(p.address, '[0-9].*$', ''), '(镇|乡|街道)(.+?(村|社区))'))[2] END AS village
  FROM publish.master_person p LEFT JOIN first_record r USING (master_id) WHERE p.release_no = :n)
"""


@pytest.fixture(scope="module")
def published(engine, _served_platforms, county):
    """The county on day 0, ingested, matched and published as release 1 (once for this module)."""
    from tests.helpers import empty_warehouse, publish_served_county

    empty_warehouse(engine)
    _served_platforms.set_faults(None)
    _served_platforms.advance(county)
    release = publish_served_county()
    return {"engine": engine, "release_no": release["release_no"]}


@pytest.fixture(scope="module")
def data(published):
    with published["engine"].connect() as conn:
        return statistics.load_release(conn, as_of=AS_OF)


def _sql_counts(conn, where: str, *, record_filter: str = "", extra: str = "NULL") -> Counter:
    """(town, village, extra) → persons, by SQL: ``where`` selects from ``placed`` (one row per person)."""
    rows = conn.execute(sa.text(PLACE.format(record_filter=record_filter)
                                + f"SELECT town, village, {extra} AS x, count(*) FROM placed WHERE {where}"
                                  " GROUP BY 1, 2, 3"), {"n": 1, "as_of": AS_OF}).all()
    return Counter({(t, v, x): n for t, v, x, n in rows})


def _enrolled(sources: str, condition: str = "true") -> str:
    return (f"EXISTS (SELECT FROM publish.enrolment e WHERE e.release_no = placed.release_no AND e.master_id ="
            f" placed.master_id AND e.source IN ({sources}) AND {condition})")


ALIVE = "coalesce(status, '') <> 'deceased'"
EXPECTED = {  # kind → (where, the record filter for placing persons without a golden address)
    "dibao": (f"{ALIVE} AND " + _enrolled("'mz_dibao'", "e.status_raw = '在保'"),
              "AND e.source = 'mz_dibao' AND e.status_raw = '在保'"),
    "gaoling": (f"{ALIVE} AND (years >= 80 OR years IS NULL) AND " + _enrolled("'mz_gaoling'", "e.status_raw <> '停发'"),
                "AND e.source = 'mz_gaoling' AND e.status_raw <> '停发'"),
    "canji": (f"{ALIVE} AND " + _enrolled("'mz_canji'"), "AND e.source = 'mz_canji'"),
    "yuling": (f"{ALIVE} AND (sex = 2 OR sex IS NULL) AND (years BETWEEN 15 AND 49 OR years IS NULL) AND "
               + _enrolled("'wj_yuling'"), "AND e.source = 'wj_yuling'"),
    "liudong": (f"{ALIVE} AND " + _enrolled("'wj_liudong'"), "AND e.source = 'wj_liudong'"),
    "births": (f"{ALIVE} AND birth_date BETWEEN '2026-01-01' AND CAST(:as_of AS date) AND "
               + _enrolled("'wj_chusheng'"), "AND e.source = 'wj_chusheng'"),
    "deaths": ("status = 'deceased' AND status_date BETWEEN '2026-01-01' AND CAST(:as_of AS date)", ""),
    "pyramid": (ALIVE, ""),
}


def _read(path) -> dict:
    ws = load_workbook(path).active
    cells = [[c.value for c in row] for row in ws.iter_rows()]
    top = next(i for i, r in enumerate(cells) if r[0] == "镇（乡、街道）")
    body = next(i for i in range(top, len(cells)) if cells[i][0] not in (None, "镇（乡、街道）") and i > top)
    end = next(i for i in range(body, len(cells)) if cells[i][0] == "合计")
    return {"ws": ws, "cells": cells, "head": cells[top:body], "lines": cells[body:end + 1],
            "title": cells[0][0], "notes": [r[0] for r in cells[1:top] if r[0]]}


def _groups(form: dict, first: int) -> list[str]:
    """The column group of every count column from ``first`` on: a merged heading is read in its first
    cell only, so each following cell with a sub-heading takes the group before it."""
    top, sub = form["head"][0][first:], form["head"][1][first:]
    out: list[str] = []
    for i, (group, under) in enumerate(zip(top, sub)):
        out.append(group if group is not None or not i or under is None else out[-1])
    return out


def _persons_by_place(form: dict, column: int) -> Counter:
    out: Counter = Counter()
    for line in form["lines"]:
        if line[1] in ("小计", None) or line[0] == "合计":
            continue
        out[(line[0], line[1])] += line[column]
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_reconciles_with_sql(published, data, kind, tmp_path):
    """Every kind for the county, a town and a village: each village's persons equal an SQL count of the
    release, every 小计 and 合计 equals the sum of its lines, every breakdown adds up to the persons."""
    spec = statistics.kind_spec(kind)
    labels = 3 if spec.rows else 2
    town = next(c for c in data.communities if c.level == "town")
    village = next(c for c in data.communities if c.level == "village" and c.town == town.town)
    with published["engine"].connect() as conn:
        county = statistics.make_report(conn, kind, tmp_path, data=data, suppress=False, with_csv=True)
        form = _read(county.paths[0])
        assert form["title"] == spec.title
        assert any("填报单位" in n and "统计时点：2026-11-21" in n and "第1版" in n for n in form["notes"])
        assert county.paths[1].read_text(encoding="utf-8-sig").splitlines()[0].startswith("镇（乡、街道）")
        assert len(form["ws"]._images) == (1 if spec.chart else 0)  # the pyramid / monthly chart as PNG
        assert form["ws"].print_title_rows and int(form["ws"].page_setup.paperSize) == 9  # A4
        assert any(str(r[0]).startswith("制表人") for r in form["cells"] if r[0])
        lines = form["lines"]
        width = len(lines[-1])
        data_lines = [ln for ln in lines if ln[0] != "合计" and ln[1] != "小计"]
        for j in range(labels, width):  # 合计 = the sum of the lines; each 小计 = its town's lines
            assert lines[-1][j] == sum(ln[j] or 0 for ln in data_lines), (kind, j)
            for sub in (ln for ln in lines if ln[1] == "小计"):
                assert sub[j] == sum(ln[j] or 0 for ln in data_lines if ln[0] == sub[0]), (kind, sub[0], j)
        groups = _groups(form, labels)
        assert any(groups.count(g) > 1 for g in groups) == any(c.by is not None for c in spec.columns)
        persons_col = form["head"][0].index(next(c.header for c in spec.columns
                                                 if c.measure == "persons" and c.by is None))
        for group in dict.fromkeys(g for g in groups if g and groups.count(g) > 1):
            cols = [labels + i for i, g in enumerate(groups) if g == group]
            for ln in lines:  # a breakdown (by age, sex, month, grade) adds up to the persons
                assert sum(ln[j] for j in cols) == ln[persons_col], (kind, group, ln)
        if kind in EXPECTED:
            where, record_filter = EXPECTED[kind]
            expected = _sql_counts(conn, where, record_filter=record_filter)
            got = _persons_by_place(form, persons_col)
            want = Counter({(t, v): n for (t, v, _), n in expected.items() if t is not None and v is not None})
            assert +got == +Counter({k: v for k, v in got.items() if k in want or v}) and {
                k: v for k, v in got.items() if v} == dict(+want), kind
            assert lines[-1][persons_col] == sum(expected.values()), kind
        for place in (town.name, village.name):
            part = statistics.make_report(conn, kind, tmp_path, community=place, data=data, suppress=False)
            lines_here = _read(part.paths[0])["lines"]
            assert lines_here[-1][persons_col] == sum(n for (t, v), n in _persons_by_place(form, persons_col).items()
                                                      if t == town.town and (place == town.name or v == village.village))


@pytest.mark.parametrize("kind", [k for k, s in statistics.shipped_statistics().kinds.items() if s.ledger])
def test_total_equals_the_ledger_rows(published, data, kind, tmp_path):
    """For each town, the report's 合计 of persons equals the rows of the matching ledger (same release, date)."""
    spec = statistics.kind_spec(kind)
    towns = [c for c in data.communities if c.level == "town"][:3]
    with published["engine"].connect() as conn:
        count = statistics.count_kind(kind, data)
        for town in towns:
            table = count.table(town)
            ledger = ledgers.generate_ledger(conn, spec.ledger, town.name, tmp_path, sources=load_registry(),
                                             as_of=AS_OF)
            assert table.total.cells[next(j for j, c in enumerate(table.columns) if c.measure == "persons")] \
                == ledger.rows, (kind, town.name)


def test_breakdowns_by_sql(published, data):
    """A few breakdown cells against SQL: dibao by sex, yuling by five-year band, liudong by province."""
    with published["engine"].connect() as conn:
        where, rf = EXPECTED["dibao"]
        by_sex = _sql_counts(conn, where, record_filter=rf, extra="CASE sex WHEN 1 THEN '男' WHEN 2 THEN '女' ELSE '不详' END")
        where, rf = EXPECTED["yuling"]
        by_band = _sql_counts(conn, where, record_filter=rf, extra="CAST(floor(years / 5) * 5 AS int)")
        liudong = conn.execute(sa.text(
            "SELECT left(e.status_raw, 2), count(DISTINCT e.master_id) FROM publish.enrolment e JOIN"
            " publish.master_person p USING (release_no, master_id) WHERE e.release_no = 1 AND e.source = 'wj_liudong'"
            " AND coalesce(p.status, '') <> 'deceased' GROUP BY 1")).all()
    dibao = statistics.count_kind("dibao", data).table(None)
    for sex in ("男", "女"):
        j = next(i for i, c in enumerate(dibao.columns) if c.value == sex)
        assert dibao.total.cells[j] == sum(n for (_, _, x), n in by_sex.items() if x == sex)
    yuling = statistics.count_kind("yuling", data).table(None)
    for start in range(15, 50, 5):
        j = next(i for i, c in enumerate(yuling.columns) if c.value == f"{start}-{start + 4}岁")
        assert yuling.total.cells[j] == sum(n for (_, _, x), n in by_band.items() if x == start)
    provinces = statistics.count_kind("liudong", data).table(None)
    shown = Counter()
    for line in provinces.lines:
        if line.role == "data":
            shown[line.value] += line.cells[0]
    assert sum(shown.values()) == sum(n for _, n in liudong)
    assert len(shown) == len({p for p, _ in liudong})
    assert all(name.endswith(("省", "市", "自治区", "特别行政区", "地区", "不详")) for name in shown)


def test_bad_kind_community_release(published, data, tmp_path):
    with published["engine"].connect() as conn:
        with pytest.raises(StatisticsError, match=r"unknown report kind 'nope'.*dibao.*overlaps"):
            statistics.make_report(conn, "nope", tmp_path)
        with pytest.raises(StatisticsError, match=r"no such community '火星村'.*known ones: .*镇"):
            statistics.make_report(conn, "dibao", tmp_path, community="火星村", data=data)
        with pytest.raises(StatisticsError, match=r"there is no release 99"):
            statistics.make_report(conn, "dibao", tmp_path, release_no=99)
        with pytest.raises(StatisticsError, match=r"unknown department 'police'.*civil_affairs"):
            statistics.make_report(conn, "dibao", tmp_path, for_department="police", data=data)


def _hub(*args: str):
    from typer.testing import CliRunner

    from hub.cli import app

    return CliRunner().invoke(app, list(args), prog_name="hub")


def test_cli_list_and_report(published, tmp_path):
    """hub report --list names every kind (id first, ≥ 8); hub report writes the form and logs the export."""
    listed = _hub("report", "--list")
    assert listed.exit_code == 0, listed.output
    ids = [line.split()[0] for line in listed.output.splitlines() if line.strip()]
    assert ids == KINDS and len(ids) >= 8
    out = tmp_path / "forms"
    out.mkdir()
    made = _hub("report", "gaoling", "--out", str(out), "--for-department", "civil_affairs", "--as-of", "2026-11-21",
                "--csv")
    assert made.exit_code == 0, made.output
    assert sorted(p.suffix for p in out.iterdir()) == [".csv", ".xlsx"]
    with published["engine"].connect() as conn:
        logged = conn.execute(sa.text("SELECT kind, what FROM audit.export_log WHERE kind = 'report'")).all()
    assert len(logged) == 2 and all("kind=gaoling" in w for _, w in logged)
    bad = _hub("report", "nope")
    assert bad.exit_code == 1 and "known kinds" in bad.output


def test_copy_for_another_department_is_suppressed(published, data, tmp_path):
    """The owner's copy shows every count; another department's hides the small ones (and enough others)."""
    with published["engine"].connect() as conn:
        own = statistics.make_report(conn, "canji", tmp_path / "own.xlsx", data=data, for_department="civil_affairs")
        other = statistics.make_report(conn, "canji", tmp_path / "other.xlsx", data=data, for_department="health")
    assert not own.suppressed and other.suppressed
    shown = [c for ln in _read(own.paths[0])["lines"] for c in ln[3:]]
    hidden = [c for ln in _read(other.paths[0])["lines"] for c in ln[3:]]
    assert SUPPRESSED not in shown and any(0 < c < 5 for c in shown)
    assert SUPPRESSED in hidden and not any(isinstance(c, int) and 0 < c < 5 for c in hidden)


def test_no_suppressed_cell_is_given_back_by_a_line_or_a_column(published, data, tmp_path):
    """In the copy for another department, a line or column (within a town, with its 小计; across the 小计
    lines, with the 合计) that hides a cell hides at least two: none is its total minus the cells shown."""
    with published["engine"].connect() as conn:
        other = statistics.make_report(conn, "canji", tmp_path, data=data, for_department="health")
    form = _read(other.paths[0])
    lines = form["lines"]
    groups = _groups(form, 3)
    blocks = [[3 + i for i, g in enumerate(groups) if g == group] for group in dict.fromkeys(groups)]
    blocks = [b for b in blocks if b != [3]]  # column 3 is the persons: each breakdown block adds up to it
    hidden = [[c == SUPPRESSED for c in ln] for ln in lines]
    assert any(any(h) for h in hidden) and blocks
    for ln, h in zip(lines, hidden):
        for block in blocks:  # a line: the persons cell and one breakdown's cells
            assert h[3] + sum(h[j] for j in block) != 1, ln
    towns = dict.fromkeys(ln[0] for ln in lines if ln[1] not in ("小计", None))
    for j in range(3, len(lines[0])):
        for town in towns:  # a column within a town, with the town's 小计
            part = [h[j] for ln, h in zip(lines, hidden) if ln[0] == town]
            assert sum(part) != 1, (town, j)
        assert sum(h[j] for ln, h in zip(lines, hidden) if ln[1] == "小计" or ln[0] == "合计") != 1, j


def test_compare_shows_both_releases_and_the_change(published, data, tmp_path):
    """--compare: three header rows (this release, the other, 增减); the change per cell is the difference."""
    with published["engine"].connect() as conn:
        result = statistics.make_report(conn, "dibao", tmp_path, town=data.communities[0].name, as_of=AS_OF,
                                        compare=published["release_no"], suppress=False, with_csv=True)
    form = _read(result.paths[0])
    assert [h[2] for h in form["head"]][0] == "第1版" and "增减" in form["head"][0]
    width = (len(form["lines"][0]) - 2) // 3
    for line in form["lines"]:
        now, before, change = line[2:2 + width], line[2 + width:2 + 2 * width], line[2 + 2 * width:]
        assert now == before and change == [a - b for a, b in zip(now, before)]
    assert "对比第1版" in result.paths[0].name


def test_pipeline_writes_every_kind_for_every_community(published, tmp_path, monkeypatch):
    """What the report task writes: each chosen kind for the county and every community, and the index."""
    from hub import pipeline, settings
    from reports.stat_form import write_all

    with published["engine"].connect() as conn:
        places = 1 + len(statistics.load_release(conn).communities)
    monkeypatch.setenv("HUB_REPORTS", "dibao, pyramid")
    assert settings.statistical_reports() == ["dibao", "pyramid"]
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    assert pipeline._statistical_reports() == 2 * places  # the report task, after a release
    written = tmp_path / "home" / "reports" / str(published["release_no"])
    assert len(list(written.glob("*.xlsx"))) == 2 * places and (written / "index.html").exists()
    monkeypatch.setenv("HUB_REPORTS", "none")
    assert settings.statistical_reports() == [] and pipeline._statistical_reports() == 0
    with published["engine"].connect() as conn:
        done = write_all(conn, tmp_path / "1", kinds=["dibao", "pyramid"], workers=2)
        with pytest.raises(StatisticsError, match="unknown report kind 'nope'"):
            write_all(conn, tmp_path / "2", kinds=["nope"])
    files = sorted(p.name for p in (tmp_path / "1").glob("*.xlsx"))
    assert done["files"] == len(files) == 2 * places
    index = (tmp_path / "1" / "index.html").read_text(encoding="utf-8")
    assert all(name in index for name in files)
