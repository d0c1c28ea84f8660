"""Statistical reports (统计报表) from the published index, reconciled with SQL counts of the release.

The county is ingested, matched and published once for the module. Every kind is written for the
county, one town and one village; each figure read back from the XLSX form is compared with a count
written here, independently, in SQL against publish.master_person / publish.enrolment: every cell of
every kind (households, age bands, sex, grades, months, provinces, five-year bands, programme pairs,
deaths since the previous report), every 小计 and 合计, for the county and for one village.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pandas as pd
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
    from tests.helpers import publish_day0

    release = publish_day0(engine, _served_platforms, county)
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


def test_cli_list_and_report(published, data, tmp_path):
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
    # in the hub's own export folder the same report made again replaces the earlier one
    for _ in range(2):
        town = next(c.name for c in data.communities if c.level == "town")
        again = _hub("report", "dibao", "--community", town, "--as-of", "2026-11-21")
        assert again.exit_code == 0, again.output


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
    # one kind is enough to show the task writes it everywhere (every kind's cells are checked above)
    monkeypatch.setenv("HUB_REPORTS", "dibao")
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    assert pipeline._statistical_reports() == places  # the report task, after a release
    written = tmp_path / "home" / "reports" / str(published["release_no"])
    assert len(list(written.glob("*.xlsx"))) == places and (written / "index.html").exists()
    monkeypatch.setenv("HUB_REPORTS", "none")
    assert settings.statistical_reports() == [] and pipeline._statistical_reports() == 0
    with published["engine"].connect() as conn:
        done = write_all(conn, tmp_path / "1", kinds=["gaoling"], workers=2)
        with pytest.raises(StatisticsError, match="unknown report kind 'nope'"):
            write_all(conn, tmp_path / "2", kinds=["nope"])
    files = sorted(p.name for p in (tmp_path / "1").glob("*.xlsx"))
    assert done["files"] == len(files) == places
    index = (tmp_path / "1" / "index.html").read_text(encoding="utf-8")
    assert all(name in index for name in files)


# ------------------------------------------------------------------ every cell of every kind, by SQL
# One query per kind gives each person counted (one row per person and pair for the overlaps) with
# their place and the label of every breakdown, written here in SQL from the published release: the
# population by its first qualifying record (by source and record), ages in completed years at the
# as-of date, the golden address's town, village, group and house number (else the record's).
def _population(sources: str, condition: str = "true") -> str:
    return f"""
WITH q AS (SELECT * FROM publish.enrolment WHERE release_no = :n AND source IN ({sources}) AND {condition}),
f AS (SELECT DISTINCT ON (master_id) * FROM q ORDER BY master_id, source, source_record_id),
r AS (SELECT DISTINCT ON (master_id) master_id, address_town AS r_town, address_village AS r_village FROM q
      WHERE address_town IS NOT NULL ORDER BY master_id, source, source_record_id),
u AS (
  SELECT p.*, f.status_raw, f.record_fields, f.address_town AS f_town, f.address_village AS f_village,
    f.address_group AS f_group, f.address_house_no AS f_house,
    date_part('year', age(CAST(:as_of AS date), p.birth_date)) AS years,
    CASE p.sex WHEN 1 THEN '男' WHEN 2 THEN '女' ELSE '不详' END AS sex_label,
    CASE WHEN p.address IS NULL THEN r.r_town ELSE (regexp_match(regexp_replace(p.address, '[0-9].*$', ''),
      '([^县区市省]+?(镇|乡|街道))'))[1] END AS town,
    CASE WHEN p.address IS NULL THEN r.r_village ELSE (regexp_match(regexp_replace(p.address, '[0-9].*$', ''),
      '(镇|乡|街道)(.+?(村|社区))'))[2] END AS village
  FROM publish.master_person p JOIN f USING (master_id) LEFT JOIN r USING (master_id) WHERE p.release_no = :n)
"""


def _band(bands: list[tuple[int | None, int | None, str]]) -> str:
    whens = " ".join(f"WHEN years BETWEEN {lo or 0} AND {hi if hi is not None else 999} THEN '{label}'"
                     for lo, hi, label in bands)
    return f"CASE {whens} ELSE '不详' END"


_ALL = ("'mz_dibao', 'mz_gaoling', 'mz_canji', 'wj_yuling', 'wj_liudong', 'wj_chusheng', 'rs_yanglao',"
        " 'rs_yiliao'")
_ALIVE = "coalesce(status, '') <> 'deceased'"
_MONTH = """to_char({col}, 'YYYY"年"MM"月"')"""
_HOUSEHOLD = """CASE
  WHEN address IS NOT NULL AND substring(address from '(\\d+)号') IS NOT NULL AND (town IS NOT NULL OR village IS NOT NULL)
    THEN concat_ws('|', town, village, substring(address from '(\\d+)组'), substring(address from '([0-9-]+)号'))
  WHEN address IS NULL AND f_house IS NOT NULL AND (f_town IS NOT NULL OR f_village IS NOT NULL)
    THEN concat_ws('|', f_town, f_village, f_group, f_house)
  ELSE '~' || master_id END"""
_FIVE = ("CASE WHEN years IS NULL THEN '不详' WHEN years >= 100 THEN '100岁及以上' ELSE"
         " concat(floor(years / 5) * 5, '-', floor(years / 5) * 5 + 4, '岁') END")
_PROGRAMS = ("(VALUES ('dibao', 1, '低保'), ('gaoling', 2, '高龄津贴'), ('canji', 3, '残疾人'), ('yuling', 4, '育龄妇女'),"
             " ('liudong', 5, '流动人口'), ('chusheng', 6, '出生登记'), ('yanglao', 7, '养老保险'), ('yiliao', 8, '医疗保险'))"
             " AS g(program, rank, name)")
# kind → (the SQL of the persons counted: town, village, x (the row value) and the breakdowns' labels,
#         {column group header → the label column; None: every person; "households": distinct households})
CELLS = {
    "dibao": (_population("'mz_dibao'", "program = 'dibao' AND status_raw = '在保'")
              + f"SELECT town, village, NULL AS x, {_HOUSEHOLD} AS hh, sex_label AS sex, "
              + _band([(None, 17, "0-17周岁"), (18, 59, "18-59周岁"), (60, None, "60周岁及以上")])
              + f" AS band FROM u WHERE {_ALIVE}",
              {"保障户数": "households", "保障人数": None, "按年龄分": "band", "按性别分": "sex"}),
    "gaoling": (_population("'mz_gaoling'", "program = 'gaoling' AND status_raw IS DISTINCT FROM '停发'")
                + "SELECT town, village, NULL AS x, "
                + _band([(80, 89, "80-89周岁"), (90, 99, "90-99周岁"), (100, None, "100周岁及以上")])
                + f" AS band FROM u WHERE {_ALIVE} AND (years >= 80 OR years IS NULL)",
                {"高龄老人数": None, "按年龄分": "band"}),
    "canji": (_population("'mz_canji'", "program = 'canji'")
              + "SELECT town, village, coalesce(nullif(status_raw, ''), '不详') AS x,"
                " coalesce(nullif(record_fields ->> '残疾等级', ''), '不详') AS grade FROM u WHERE " + _ALIVE,
              {"残疾人数": None, "按残疾等级分": "grade"}),
    "yuling": (_population("'wj_yuling'", "program = 'yuling'") + f"SELECT town, village, NULL AS x, {_FIVE} AS band"
               f" FROM u WHERE {_ALIVE} AND (sex = 2 OR sex IS NULL) AND (years BETWEEN 15 AND 49 OR years IS NULL)",
               {"育龄妇女数": None, "按年龄组分": "band"}),
    "liudong": (_population("'wj_liudong'", "program = 'liudong'")
                + "SELECT town, village, left(status_raw, 2) AS x, "
                + _band([(None, 14, "0-14岁"), (15, 59, "15-59岁"), (60, None, "60岁及以上")])
                + f" AS band FROM u WHERE {_ALIVE}",
                {"流动人口数": None, "按年龄分": "band"}),
    "births": (_population("'wj_chusheng'", "program = 'chusheng'")
               + f"SELECT town, village, NULL AS x, {_MONTH.format(col='birth_date')} AS month, sex_label AS sex"
               f" FROM u WHERE {_ALIVE} AND birth_date BETWEEN '2026-01-01' AND CAST(:as_of AS date)",
               {"出生人数": None, "按出生月份分": "month", "按性别分": "sex"}),
    "deaths": (_population(_ALL).replace("JOIN f USING", "LEFT JOIN f USING")
               + f"SELECT town, village, NULL AS x, {_MONTH.format(col='status_date')} AS month, sex_label AS sex"
               " FROM u WHERE status = 'deceased' AND status_date BETWEEN '2026-01-01' AND CAST(:as_of AS date)",
               {"死亡人数": None, "按死亡月份分": "month", "按性别分": "sex"}),
    "pyramid": (_population(_ALL).replace("JOIN f USING", "LEFT JOIN f USING")
                + f"SELECT town, village, {_FIVE} AS x, sex_label AS sex FROM u WHERE {_ALIVE}",
                {"人口数": None, "按性别分": "sex"}),
    "overlaps": (_population(_ALL) + f""", pr AS (SELECT DISTINCT q.master_id, g.rank, g.name FROM q JOIN {_PROGRAMS}
                 USING (program)), many AS (SELECT master_id FROM pr GROUP BY 1 HAVING count(*) >= 2)
                 SELECT town, village, a.name || '+' || b.name AS x FROM u JOIN many USING (master_id)
                 JOIN pr a USING (master_id) JOIN pr b ON b.master_id = u.master_id AND a.rank < b.rank
                 WHERE {_ALIVE}""", {"人数": None}),
}
# 高龄 本期死亡: persons of the programme (whatever their status or age) who died up to the as-of date
# (release 1 has no previous report), placed like the others
GAOLING_DEATHS = (_population("'mz_gaoling'", "program = 'gaoling'") + "SELECT town, village, NULL AS x FROM u"
                  " WHERE status = 'deceased' AND status_date <= CAST(:as_of AS date)")


def _label(town, village) -> tuple:
    """How the form names a place: a town without a village, or no place at all."""
    if town is None and village is None:
        return (statistics.NO_PLACE, None)
    return (town, village if village is not None else statistics.NO_VILLAGE)


def _none(x):
    return None if x == "·" else x


def _expected_cells(conn, kind: str) -> Counter:
    """(town, village, row value, column group, sub-heading) → the count, from SQL over the release."""
    sql, columns = CELLS[kind]
    units = pd.DataFrame([dict(r) for r in conn.execute(sa.text(sql), {"n": 1, "as_of": AS_OF}).mappings()])
    if kind == "liudong":  # the origin province from the first two digits (GB/T 2260)
        from schemas.regions import RESIDENCE_PERMIT_CODES, current_regions

        names = {**current_regions(), **RESIDENCE_PERMIT_CODES}
        units["x"] = units["x"].map(lambda p: names.get(f"{p}0000", "不详") if isinstance(p, str) else "不详")
    out: Counter = Counter()
    if units.empty:
        return out
    units["place"] = [_label(t, v) for t, v in zip(units["town"], units["village"])]
    units["x"] = units["x"].astype(object).where(units["x"].notna(), "·")  # no row breakdown
    for group, how in columns.items():
        keys = ["place", "x"]
        if how == "households":
            counted = units.groupby(keys, dropna=False)["hh"].nunique()
            out.update({(p[0], p[1], _none(x), group, None): int(n) for (p, x), n in counted.items()})
        elif how is None:
            counted = units.groupby(keys, dropna=False).size()
            out.update({(p[0], p[1], _none(x), group, None): int(n) for (p, x), n in counted.items()})
        else:
            counted = units.groupby([*keys, how], dropna=False).size()
            out.update({(p[0], p[1], _none(x), group, sub): int(n) for (p, x, sub), n in counted.items()})
    if kind == "gaoling":
        dead = conn.execute(sa.text(GAOLING_DEATHS), {"n": 1, "as_of": AS_OF}).all()
        out.update(Counter((*_label(t, v), None, "本期死亡", None) for t, v, _ in dead))
    return +out


def _form_cells(form: dict, labels: int) -> tuple[Counter, list]:
    """(town, village, row value, column group, sub-heading) → the count, as the form shows each data line."""
    groups = _groups(form, labels)
    subs = form["head"][1][labels:]
    cells: Counter = Counter()
    for line in form["lines"]:
        if line[0] == "合计" or line[1] == "小计":
            continue
        for j, (group, sub) in enumerate(zip(groups, subs)):
            key = (line[0], line[1], line[2] if labels == 3 else None, group, sub if groups.count(group) > 1 else None)
            assert key not in cells, key  # one line per place and row value
            cells[key] = line[labels + j]
    return cells, groups


@pytest.mark.parametrize("kind", KINDS)
def test_every_cell_equals_sql(published, data, kind, tmp_path):
    """Every cell of every kind — each village's line, each town's 小计 and the 合计, for the county and for one
    village — read from the written form, equals a count written here in SQL against the release."""
    spec = statistics.kind_spec(kind)
    labels = 3 if spec.rows else 2
    with published["engine"].connect() as conn:
        want = _expected_cells(conn, kind)
        county = _read(statistics.make_report(conn, kind, tmp_path, data=data, suppress=False).paths[0])
        got, groups = _form_cells(county, labels)
        assert set(groups) == set(CELLS[kind][1]) | ({"本期死亡"} if kind == "gaoling" else set())
        assert {k for k, n in got.items() if n} == set(want), (kind, set(want) ^ {k for k, n in got.items() if n})
        assert all(got[k] == n for k, n in want.items()), [(k, got[k], n) for k, n in want.items() if got[k] != n]
        columns = [(g, s if groups.count(g) > 1 else None) for g, s in zip(groups, county["head"][1][labels:])]
        for line in county["lines"]:  # 小计: a town's cells by SQL; 合计: the county's
            if line[1] == "小计" or line[0] == "合计":
                mine = [sum(n for k, n in want.items() if k[3:] == col and (line[0] == "合计" or k[0] == line[0]))
                        for col in columns]
                assert list(line[labels:]) == mine, (kind, line[:2])
        village = next(c for c in data.communities if c.level == "village" and any(
            k[:2] == (c.town, c.village) for k in want))
        part = _read(statistics.make_report(conn, kind, tmp_path, community=village.name, data=data,
                                            suppress=False).paths[0])
    here, _ = _form_cells(part, labels)
    assert {k: n for k, n in here.items() if n} == {k: n for k, n in want.items() if k[:2] == (village.town, village.village)}
    assert list(part["lines"][-1][labels:]) == [sum(n for k, n in want.items() if k[:2] == (village.town, village.village)
                                                    and k[3:] == col) for col in columns]


# ------------------------------------------------------------------ after the user trial: compare, --out, log, CSV
def test_compared_copy_for_another_department_hides_the_same_cells_in_both_releases(published, data, tmp_path):
    """A copy for another department with --compare: the compared release's columns and the change show ＊
    wherever this release's do (one pattern), and no small count of either release is shown."""
    town = next(c for c in data.communities if c.level == "town")
    with published["engine"].connect() as conn:
        made = statistics.make_report(conn, "pyramid", tmp_path, town=town.name, as_of=AS_OF, with_csv=True,
                                      compare=published["release_no"], for_department="civil_affairs")
    assert made.suppressed
    lines = _read(made.paths[0])["lines"]
    width = (len(lines[0]) - 3) // 3
    assert any(SUPPRESSED in ln for ln in lines)
    for ln in lines:
        now, before, change = ln[3:3 + width], ln[3 + width:3 + 2 * width], ln[3 + 2 * width:]
        hidden = [c == SUPPRESSED for c in now]
        assert [c == SUPPRESSED for c in before] == hidden == [c == SUPPRESSED for c in change], ln
        assert not any(isinstance(c, int) and 0 < c < 5 for c in now + before), ln
    rows = made.paths[1].read_text(encoding="utf-8-sig").splitlines()
    assert sum(r.count(SUPPRESSED) for r in rows) == 3 * sum(ln[3:3 + width].count(SUPPRESSED) for ln in lines)


def _births(data, months: dict[str, int], village) -> statistics.KindCount:
    """A births count built by hand: one village, ``months`` → births (all girls)."""
    spec = statistics.kind_spec("births")
    cols = [statistics.ColumnKey("出生人数", None, "persons")]
    cols += [statistics.ColumnKey("按出生月份分", m, "persons", m, True) for m in months]
    cols += [statistics.ColumnKey("按性别分", s, "persons", s) for s in ("男", "女")]
    total = sum(months.values())
    row = [total, *months.values(), 0, total]
    counts = pd.DataFrame([row], index=pd.MultiIndex.from_tuples([(village.town, village.village, "·")]),
                          columns=range(len(cols)))
    return statistics.KindCount("births", spec, data, cols, counts, [None], (None, True))


def test_compare_aligns_months_present_in_one_release_only(data):
    """births --compare where each release has a month the other has not: the columns are the union in month
    order, a month missing from a release counts 0 there, and the change is computed per month."""
    from reports import stat_form

    village = next(c for c in data.communities if c.level == "village")
    town = next(c for c in data.communities if c.level == "town" and c.town == village.town)
    now = _births(data, {"2026年01月": 2, "2026年03月": 5}, village).table(town)
    before = _births(data, {"2026年02月": 1, "2026年03月": 4, "2026年04月": 7}, village).table(town)
    now, before = stat_form.aligned(now, before)
    months = [c.value for c in now.columns if c.by_month]
    assert months == ["2026年01月", "2026年02月", "2026年03月", "2026年04月"] and now.columns == before.columns
    rows = stat_form.values(now, before)
    k = len(now.columns)
    total = rows[-1][2:]
    assert total[:k] == [7, 2, 0, 5, 0, 0, 7] and total[k:2 * k] == [12, 0, 1, 4, 7, 0, 12]
    assert total[2 * k:] == [-5, 2, -1, 1, -7, 0, -5]
    assert len(stat_form.csv_text(now, before).splitlines()) == 1 + len(rows)


def test_csv_and_xlsx_labels_are_never_formulas(data, tmp_path):
    """A place or value that starts like a formula (=, +, -, @) is written as text in the CSV and the XLSX."""
    from reports import stat_form
    from reports.ledgers import Community

    village = Community("=HYPERLINK(\"http://x\")@SUM(1)", "village", "=HYPERLINK(\"http://x\")", "@SUM(1)", 3)
    table = _births(data, {"2026年01月": 3}, village).table(None)
    text = stat_form.csv_text(table)
    assert "'=HYPERLINK" in text and "'@SUM(1)" in text and ",=HYPERLINK" not in text
    path = stat_form.save(table, tmp_path / "f.xlsx", department="县卫生健康委员会",
                          generated=dt.datetime(2026, 11, 21, 9, tzinfo=dt.UTC))[0]
    cells = [c.value for row in load_workbook(path).active.iter_rows() for c in row]
    assert "'@SUM(1)" in cells and not any(isinstance(c, str) and c.startswith(("=", "@")) for c in cells)


def test_out_refuses_an_existing_file_and_a_wrong_suffix_and_logs_the_recipient(published, data, tmp_path):
    """--out never writes over a file without --force, takes only .xlsx (the CSV goes beside it as .csv), and
    the export log names the department each copy is for."""
    town = next(c.name for c in data.communities if c.level == "town")
    kept = tmp_path / "x.xlsx"
    kept.write_text("keep")
    refused = _hub("report", "dibao", "--town", town, "--out", str(kept), "--for-department", "social_security")
    assert refused.exit_code == 1 and "already exists" in refused.output and "--force" in refused.output
    assert kept.read_text() == "keep"
    for bad in (tmp_path / "x.csv", tmp_path / "passwd"):
        wrong = _hub("report", "dibao", "--out", str(bad), "--csv")
        assert wrong.exit_code == 1 and ".xlsx" in wrong.output and not bad.exists()
    (tmp_path / "y.csv").write_text("keep")  # the CSV beside the form is protected too
    beside = _hub("report", "dibao", "--out", str(tmp_path / "y.xlsx"), "--csv")
    assert beside.exit_code == 1 and "y.csv already exists" in beside.output and not (tmp_path / "y.xlsx").exists()
    forced = _hub("report", "dibao", "--town", town, "--out", str(kept), "--force", "--csv",
                  "--for-department", "social_security")
    assert forced.exit_code == 0, forced.output
    assert load_workbook(kept).active.cell(1, 1).value == statistics.kind_spec("dibao").title
    assert (tmp_path / "x.csv").read_text(encoding="utf-8-sig").startswith("镇（乡、街道）")
    unnamed = _hub("report", "dibao", "--town", town, "--out", str(tmp_path / "z.xlsx"))
    assert unnamed.exit_code == 0, unnamed.output
    with published["engine"].connect() as conn:
        logged = {p: (d, w) for p, d, w in conn.execute(sa.text(
            "SELECT path, department, what FROM audit.export_log WHERE kind = 'report' AND path LIKE :d"),
            {"d": f"{tmp_path.resolve()}%"})}
    assert sorted(Path(p).name for p in logged) == ["x.csv", "x.xlsx", "z.xlsx"]
    department, what = logged[str(kept.resolve())]
    assert department == "social_security" and "for_department=social_security" in what and "owner=civil_affairs" in what
    department, what = logged[str((tmp_path / "z.xlsx").resolve())]  # a suppressed copy, no department named
    assert department is None and "for_department=未指定" in what and "suppressed=True" in what
