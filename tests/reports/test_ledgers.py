"""Ledgers (台账) from the published index, checked against the simulated county's truth.

The county is ingested, matched and published once for the module; each ledger's rows are
compared with who the simulator enrolled (its rolls, its population's addresses and birth dates),
mapped to master ids through the crosswalk.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zipfile

import pandas as pd
import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from connectors.registry import load_registry
from reports import ledgers, xlsx
from schemas.regions import region_table
from tests.helpers import publish_day0

AS_OF = dt.date(2026, 11, 21)
PERSON_HEADERS = ["序号", "主索引号", "姓名", "性别", "出生日期", "年龄", "公民身份号码", "住址", "联系电话"]
HEADERS = {
    "dibao": ["序号", "户号", "户人数", "与户主关系", *PERSON_HEADERS[1:], "保障状态", "月保障金额（元）", "起始日期",
              "数据来源"],
    "canji": [*PERSON_HEADERS, "残疾证号", "残疾类别", "残疾等级", "数据来源"],
    "yuling": [*PERSON_HEADERS, "婚姻状况", "数据来源"],
    "gaoling": [*PERSON_HEADERS[:6], "津贴档次", *PERSON_HEADERS[6:], "补贴状态", "数据来源"],
    "liudong": [*PERSON_HEADERS[:7], "现居住地址", "联系电话", "户籍地区划", "户籍地", "登记日期", "数据来源"],
}
SOURCE = {"dibao": "mz_dibao", "canji": "mz_canji", "yuling": "wj_yuling", "gaoling": "mz_gaoling", "liudong": "wj_liudong"}
# GB/T 4761-2008: the relation of each member of the simulated households to its head, by sex
RELATION = {"head": {1: "户主", 2: "户主"}, "spouse": {1: "夫", 2: "妻"}, "child": {1: "子", 2: "女"},
            "parent": {1: "父亲", 2: "母亲"}}
ADDRESS = re.compile(r"^(?P<town>.+?镇)(?P<village>.+?(?:村|社区))(?P<group>\d+)组(?P<house>\d+)号$")


@pytest.fixture(scope="module")
def published(engine, _served_platforms, county):
    """The county on day 0, ingested, matched and published as release 1 (once for this module)."""
    release = publish_day0(engine, _served_platforms, county)
    with engine.connect() as conn:
        crosswalk = pd.read_sql(sa.text("SELECT source, source_record_id, master_id FROM mpi.crosswalk"), conn)
    truth = county.truth().merge(crosswalk, on=["source", "source_record_id"], validate="one_to_one")
    return {"engine": engine, "release_no": release["release_no"], "crosswalk": truth}


# ------------------------------------------------------------------------------------ the truth
def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _population(county) -> pd.DataFrame:
    pop = county.population.copy()
    parts = pop["address"].str.extract(ADDRESS)
    pop = pd.concat([pop, parts], axis=1)
    pop["age"] = [_age(b, AS_OF) for b in pop["birth_date"]]
    return pop.set_index("person_id")


def _expected(kind: str, county, crosswalk: pd.DataFrame) -> pd.DataFrame:
    """The simulator's members of a ledger kind: person_id, master_ids (their roll records'), deceased.

    Deceased: the person's death is registered in the simulated 高龄津贴 roll (停发), the only death
    registration the departments send."""
    pop = _population(county)
    source = SOURCE[kind]
    roll = county.rolls[source]
    roll = roll[~roll["_deleted"]]
    if kind == "dibao":
        roll = roll[roll["status"] == "在保"]
    if kind == "gaoling":
        roll = roll[roll["status"] != "停发"]
    gl = county.rolls["mz_gaoling"]
    registered_dead = set(gl.loc[gl["status"] == "停发", "_person_id"])
    persons = pd.DataFrame({"person_id": sorted(set(roll["_person_id"]))})
    persons["deceased"] = persons["person_id"].isin(registered_dead)
    age = persons["person_id"].map(pop["age"])
    if kind == "yuling":
        persons = persons[persons["deceased"] | age.between(15, 49)]
    if kind == "gaoling":
        persons = persons[persons["deceased"] | (age >= 80)]
    records = crosswalk[crosswalk["source"] == source]
    persons["master_ids"] = persons["person_id"].map(records.groupby("person_id")["master_id"].agg(frozenset))
    for part in ("town", "village", "group", "house"):
        persons[part] = persons["person_id"].map(pop[part])
    return persons.reset_index(drop=True)


def _in(expected: pd.DataFrame, town: str, village: str | None = None) -> pd.DataFrame:
    hit = expected["town"] == town
    if village is not None:
        hit &= expected["village"] == village
    return expected[hit]


def _masters(frame: pd.DataFrame) -> set[str]:
    return set().union(*frame["master_ids"]) if len(frame) else set()


def _busiest_town(expected: pd.DataFrame) -> str:
    alive = expected[~expected["deceased"]]
    return alive.groupby("town").size().sort_index().idxmax()


# ------------------------------------------------------------------------------------ reading a ledger
def _read(path, sheet: int = 0) -> dict:
    wb = load_workbook(path)
    ws = wb.worksheets[sheet]
    cells = [[c.value for c in row] for row in ws.iter_rows()]
    header_at = next(i for i, row in enumerate(cells) if row[0] == "序号")
    footer_at = next(i for i, row in enumerate(cells) if isinstance(row[0], str) and row[0].startswith("合计"))
    headers = cells[header_at]
    body = [r for r in cells[header_at + 1:footer_at] if any(v is not None for v in r)]
    rows = [dict(zip(headers, r)) for r in body if isinstance(r[0], int)]
    return {"wb": wb, "ws": ws, "cells": cells, "top": [r[0] for r in cells[:header_at] if r[0]],
            "headers": headers, "rows": rows, "notes": [r[0] for r in body if not isinstance(r[0], int)],
            "footer": cells[footer_at][0], "header_row": header_at + 1, "sheets": wb.sheetnames}


def _no_placeholders(ledger: dict) -> None:
    for row in ledger["cells"]:
        for v in row:
            assert not (isinstance(v, str) and v.strip().lower() in ("none", "nan", "nat", "<na>")), row


# ------------------------------------------------------------------------------------ tests
def _generate(conn, kind, community, out=None, **options):
    """A ledger as the CLI makes it: checked against the source registry."""
    return ledgers.generate_ledger(conn, kind, community, out, sources=load_registry(), **options)


def test_shipped_ledgers_are_declared_and_valid():
    kinds = ledgers.ledger_kinds()
    assert set(kinds) >= {"dibao", "canji", "yuling", "gaoling"}
    assert kinds["dibao"] == "最低生活保障户台账"
    ledgers.load_ledgers().check_sources(load_registry())


def test_invalid_ledger_file_names_the_key(tmp_path):
    bad = tmp_path / "ledgers.yaml"
    bad.write_text("version: 1\nledgers:\n  x1:\n    title: T\n    members: {sources: [mz_dibao]}\n"
                   "    columns: [seq, household_no]\n", encoding="utf-8")
    with pytest.raises(ledgers.LedgerConfigError, match="households: true"):
        ledgers.load_ledgers(bad)
    bad.write_text("version: 1\nledgers:\n  x1:\n    title: T\n    members: {sources: [mz_dibao]}\n"
                   "    columns: [seq, 'raw:nope']\n", encoding="utf-8")
    with pytest.raises(ledgers.LedgerConfigError, match="raw field 'nope'"):
        ledgers.load_ledgers(bad).check_sources(load_registry())
    bad.write_text("version: 1\nledgers:\n  x1:\n    title: T\n    members: {sources: [mz_dibao]}\n"
                   "    columns: [seq, {value: name, type: number}]\n", encoding="utf-8")
    with pytest.raises(ledgers.LedgerConfigError, match="type 'number' applies to raw:<field> and enrolment values"):
        ledgers.load_ledgers(bad)


@pytest.mark.parametrize("kind", ["dibao", "canji", "yuling", "gaoling", "liudong"])
def test_ledger_of_a_town_matches_the_simulated_rolls(published, county, tmp_path, kind, caplog):
    expected = _expected(kind, county, published["crosswalk"])
    town = _busiest_town(expected)
    want = _in(expected, town)
    out = tmp_path / f"{kind}.xlsx"
    with caplog.at_level(logging.DEBUG), published["engine"].connect() as conn:
        result = _generate(conn, kind, town, out, as_of=AS_OF)
    ledger = _read(out)

    # who is on it: exactly the simulator's living members of the town, one row per master id
    alive, dead = want[~want["deceased"]], want[want["deceased"]]
    got = [r["主索引号"] for r in ledger["rows"]]
    assert len(got) == len(set(got)) == result.rows > 0
    assert set(got) == _masters(alive)
    assert result.release_no == published["release_no"] and result.community == town and result.path == out

    # the header block, the columns, the footer
    assert ledger["headers"] == HEADERS[kind]
    top = "\n".join(ledger["top"])
    assert ledgers.ledger_kinds()[kind] in top and town in top
    assert f"数据来源：居民数据中心 第{published['release_no']}版" in top and "2026-11-21" in top
    assert re.search(r"生成时间：\d{4}-\d\d-\d\d \d\d:\d\d（北京时间）", top)
    assert ledger["footer"].startswith(f"合计：{len(got)} 人")
    _no_placeholders(ledger)

    # the values: the truth person's birth date and age, a date cell, the master's sources
    pop = _population(county)
    person_of = published["crosswalk"].drop_duplicates("master_id").set_index("master_id")["person_id"]
    for row in ledger["rows"]:
        person = pop.loc[person_of[row["主索引号"]]]
        assert isinstance(row["出生日期"], dt.datetime) and row["出生日期"].date() == person["birth_date"]
        assert row["年龄"] == person["age"]
        assert row["性别"] == {1: "男", 2: "女"}[person["sex"]]
        assert row.get("住址", row.get("现居住地址")) == person["address"]
        assert row["公民身份号码"] == (person["id_number"] if pd.notna(person["id_number"]) else None)
        assert row["姓名"] and row["数据来源"]
    assert [r["序号"] for r in ledger["rows"]] == list(range(1, len(got) + 1))
    by_row = {r["主索引号"]: r for r in ledger["rows"]}
    roll = county.rolls[SOURCE[kind]]
    if kind == "canji":
        for _, p in alive.iterrows():
            records = roll[roll["_person_id"] == p["person_id"]]
            for master in p["master_ids"]:
                assert set(by_row[master]["残疾类别"].split("、")) == set(records["status"])
                assert set(by_row[master]["残疾等级"].split("、")) == set(records["level"])
                assert set(by_row[master]["残疾证号"].split("、")) <= set(records["record_id"])
    if kind == "yuling":
        assert {r["性别"] for r in ledger["rows"]} == {"女"}
        assert all(15 <= r["年龄"] <= 49 for r in ledger["rows"])
        assert {r["婚姻状况"] for r in ledger["rows"]} <= {"未婚", "已婚"}
    if kind == "gaoling":
        assert all(r["年龄"] >= 80 and r["补贴状态"] == "正常发放" for r in ledger["rows"])
        assert all(r["津贴档次"] == ("80-89周岁" if r["年龄"] < 90 else "90-99周岁" if r["年龄"] < 100
                                      else "100周岁及以上") for r in ledger["rows"])
    if kind == "dibao":
        assert {r["保障状态"] for r in ledger["rows"]} == {"在保"}
        _check_households(ledger, pop, person_of, result)
        _check_allowances(ledger, roll, person_of)
    if kind == "liudong":
        _check_origins(ledger, roll, person_of)

    # deceased members: on a sheet of their own, never among the rows
    assert result.deceased == len(_masters(dead))
    if len(dead):
        gone = _read(out, sheet=1)
        assert ledger["sheets"][1] == "已故人员" and {r["主索引号"] for r in gone["rows"]} == _masters(dead)
        assert all(isinstance(r["死亡日期"], dt.datetime) for r in gone["rows"])
        assert "已故人员" in top
    else:
        assert ledger["sheets"] == [ledgers.ledger_kinds()[kind]] or len(ledger["sheets"]) == 1

    # nothing personal in the logs
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for row in ledger["rows"]:
        assert row["姓名"] not in logged
        assert row["公民身份号码"] is None or row["公民身份号码"] not in logged


def _check_households(ledger, pop, person_of, result):
    """Rows of one household (same truth address) are contiguous, share 户号 and 户人数, the head first
    (与户主关系 as the truth household says), then oldest first."""
    rows = ledger["rows"]
    address = [pop.loc[person_of[r["主索引号"]], "address"] for r in rows]
    numbers = [r["户号"] for r in rows]
    assert numbers == sorted(numbers) and numbers[0] == 1
    for i in range(len(rows)):
        same = [j for j in range(len(rows)) if address[j] == address[i]]
        assert {numbers[j] for j in same} == {numbers[i]}, "one address, one household"
        assert rows[i]["户人数"] == len(same)
        assert same == list(range(same[0], same[0] + len(same))), "a household's rows are together"
    heads = 0
    for n in set(numbers):
        members = [r for r in rows if r["户号"] == n]
        truth = [pop.loc[person_of[r["主索引号"]]] for r in members]
        assert [r["与户主关系"] for r in members] == [RELATION[p["relation"]][p["sex"]] for p in truth]
        first = next((i for i, p in enumerate(truth) if p["relation"] != "head"), len(truth))
        assert "head" not in [p["relation"] for p in truth[first:]], "the head first"
        rest = [r["出生日期"] for r in members[first:]]
        assert rest == sorted(rest)
        heads += first > 0
    assert heads > 0
    assert result.households == len(set(address)) == max(numbers)
    assert ledger["footer"] == f"合计：{len(rows)} 人，{result.households} 户"


def _records(roll, person_of, master):
    records = roll[(roll["_person_id"] == person_of[master]) & ~roll["_deleted"]]
    assert len(records)
    return records


def _check_allowances(ledger, roll, person_of):
    """保障金额 and 起始日期: the member's own record's, the same for the whole household."""
    for row in ledger["rows"]:
        records = _records(roll[roll["status"] == "在保"], person_of, row["主索引号"])
        assert row["月保障金额（元）"] == float(records["amount"].iloc[0]) and 100 <= row["月保障金额（元）"] <= 1500
        assert isinstance(row["起始日期"], dt.datetime)
        assert f"{row['起始日期']:%Y-%m-%d}" == records["start_date"].iloc[0]
    per_household = pd.DataFrame(ledger["rows"]).groupby("户号")[["月保障金额（元）", "起始日期"]].nunique()
    assert (per_household == 1).all().all()


def _check_origins(ledger, roll, person_of):
    """户籍地区划 (the person's registered region code), its GB/T 2260 name, and 登记日期."""
    names = {code: region.name for code, region in region_table().items()}
    for row in ledger["rows"]:
        records = _records(roll, person_of, row["主索引号"])
        code = row["户籍地区划"]
        assert {code} == set(records["status"])
        prefecture = "" if code[2:4] == "01" and code[:2] in ("11", "12", "31", "50") else names[code[:4] + "00"]
        assert row["户籍地"] == names[code[:2] + "0000"] + prefecture + names[code]
        assert f"{row['登记日期']:%Y-%m-%d}" == max(records["status_date"])
    assert len({r["户籍地区划"][:2] for r in ledger["rows"]}) > 1  # migrants from more than one province


def test_workbook_is_print_ready(published, tmp_path):
    with published["engine"].connect() as conn:
        town = ledgers.communities(conn)[0]
        result = _generate(conn, "dibao", town, tmp_path, as_of=AS_OF)
    assert result.path.parent == tmp_path and result.path.name == f"最低生活保障户台账_{town}_第1版.xlsx"
    assert result.path.stat().st_mode & 0o077 == 0  # personal data: owner only
    ledger = _read(result.path)
    ws = ledger["ws"]
    header_row = ledger["header_row"]
    assert ws.freeze_panes == f"A{header_row + 1}"
    assert ws.print_title_rows.replace("$", "") == f"{header_row}:{header_row}"
    assert ws.page_setup.orientation == "landscape"
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth == 1 and ws.page_setup.fitToHeight == 0
    id_letter = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[ledger["headers"].index("公民身份号码")]
    assert ws.column_dimensions[id_letter].width >= 20
    date_col = ledger["headers"].index("出生日期") + 1
    cell = ws.cell(header_row + 1, date_col)
    assert cell.is_date and cell.number_format == "yyyy-mm-dd"
    id_cell = ws.cell(header_row + 1, ledger["headers"].index("公民身份号码") + 1)
    assert isinstance(id_cell.value, str) and len(id_cell.value) == 18
    # the sign-off line under the total: 制表人 and 审核人 left to sign, 填报日期 the ledger date
    signed = [v for row in ledger["cells"] for v in row if isinstance(v, str) and v.startswith(xlsx.SIGNATURE_LABELS)]
    assert signed == ["制表人：________________", "审核人：________________", "填报日期：2026-11-21"]
    assert ledger["cells"].index(next(r for r in ledger["cells"] if r[0] == signed[0])) > ledger["cells"].index(
        next(r for r in ledger["cells"] if r[0] == ledger["footer"]))


def test_no_cell_or_style_is_in_calibri(published, county, tmp_path):
    """Every font of the saved workbook — each cell's, the named styles', the default format's — is the CJK one."""
    # every 高龄津贴 record, the death registrations (停发) too: a ledger with a sheet of deceased members
    spec = tmp_path / "ledgers.yaml"
    spec.write_text("version: 1\nledgers:\n  gaoling_all:\n    title: 高龄津贴人员\n"
                    "    members: {sources: [mz_gaoling]}\n    columns: [seq, name, age, id_number, status]\n",
                    encoding="utf-8")
    gl = county.rolls["mz_gaoling"]
    dead = _population(county).loc[gl.loc[gl["status"] == "停发", "_person_id"]]
    town = dead.groupby("town").size().sort_index().idxmax()
    with published["engine"].connect() as conn:
        result = _generate(conn, "gaoling_all", town, tmp_path, as_of=AS_OF, ledgers=ledgers.load_ledgers(spec))
    with zipfile.ZipFile(result.path) as book:
        styles = book.read("xl/styles.xml").decode("utf-8")
    fonts = re.findall(r'<font>.*?<name val="([^"]+)"', styles)
    assert fonts and set(fonts) == {xlsx.FONT_NAME} and "Calibri" not in styles
    wb = load_workbook(result.path)
    assert len(wb.worksheets) == 2  # the ledger and its deceased members
    for ws in wb.worksheets:
        assert {c.font.name for row in ws.iter_rows() for c in row} == {xlsx.FONT_NAME}
    assert {s.font.name for s in wb._named_styles} == {xlsx.FONT_NAME}


def test_the_dibao_household_fields_are_kept_from_day_to_day(county):
    """与户主关系, 保障金额 and 起始日期 are the household's: kept on the next days, on every record."""
    day0 = county.served("mz_dibao").set_index("id")
    later = county.next_day().next_day()
    day2 = later.served("mz_dibao").set_index("id")
    assert day2[["yhzgx", "bzje", "qsrq"]].notna().all().all()
    assert day2.loc[day0.index, ["yhzgx", "bzje", "qsrq"]].equals(day0[["yhzgx", "bzje", "qsrq"]])
    roll = later.rolls["mz_dibao"]
    pop = later.population.set_index("person_id")
    heads = roll[roll["household_relation"] == "02"]["_person_id"]
    assert (pop.loc[heads, "relation"] == "head").all() and len(heads)
    assert (roll.groupby(roll["_person_id"].map(pop["household_id"]))[["amount", "start_date"]].nunique() == 1).all().all()


def test_village_named_with_its_town_and_ambiguous_bare_names(published, county, tmp_path):
    expected = _expected("dibao", county, published["crosswalk"])
    alive = expected[~expected["deceased"]]
    town, village = alive.groupby(["town", "village"]).size().sort_index().idxmax()
    with published["engine"].connect() as conn:
        known = ledgers.communities(conn)
        assert town in known and f"{town}{village}" in known
        assert known.index(town) < known.index(f"{town}{village}")  # each town, then its villages
        result = _generate(conn, "dibao", f"{town}{village}", tmp_path / "v.xlsx", as_of=AS_OF)
        assert result.level == "village"
        assert {r["主索引号"] for r in _read(result.path)["rows"]} == _masters(_in(alive, town, village))
        towns_with_it = [c for c in known if c.endswith(village) and c != village and c[:-len(village)] in known]
        if len(towns_with_it) > 1:
            with pytest.raises(ledgers.LedgerError, match="ambiguous") as err:
                _generate(conn, "dibao", village, tmp_path / "x.xlsx")
            assert set(err.value.known) == set(towns_with_it)
            assert not (tmp_path / "x.xlsx").exists()


def test_unknown_kind_community_or_release_lists_the_known_ones(published, tmp_path):
    with published["engine"].connect() as conn:
        with pytest.raises(ledgers.LedgerError, match="unknown ledger kind 'wubao'.*dibao.*最低生活保障户台账") as err:
            _generate(conn, "wubao", "城关镇", tmp_path / "a.xlsx")
        assert set(err.value.known) == set(ledgers.ledger_kinds())
        with pytest.raises(ledgers.LedgerError, match="no such community '月球镇'.*known ones: .*城关镇") as err:
            _generate(conn, "dibao", "月球镇", tmp_path / "b.xlsx")
        assert err.value.known == ledgers.communities(conn)
        with pytest.raises(ledgers.LedgerError, match=r"there is no release 99 \(the only release is 1\)"):
            _generate(conn, "dibao", "城关镇", tmp_path / "c.xlsx", release_no=99)
    assert not list(tmp_path.iterdir())


def test_community_without_members_gets_an_empty_ledger_with_a_note(published, county, tmp_path):
    expected = _expected("gaoling", county, published["crosswalk"])
    with published["engine"].connect() as conn:
        known = ledgers.communities(conn)
        members = {f"{t}{v}" for t, v in zip(expected["town"], expected["village"])}
        empty = next(c for c in known if c not in members and not c.endswith(("镇", "乡", "街道")))
        result = _generate(conn, "gaoling", empty, tmp_path / "empty.xlsx", as_of=AS_OF)
    ledger = _read(result.path)
    assert result.rows == 0 and ledger["rows"] == [] and ledger["headers"] == HEADERS["gaoling"]
    assert ledger["notes"] == ["本社区在第1版中没有符合收录范围的人员。"]
    assert ledger["footer"] == "合计：0 人"
    _no_placeholders(ledger)


def test_an_earlier_release_can_be_asked_for(published, tmp_path):
    with published["engine"].connect() as conn:
        town = ledgers.communities(conn, release_no=1)[0]
        result = _generate(conn, "canji", town, tmp_path / "r1.xlsx", release_no=1, as_of=AS_OF)
    assert result.release_no == 1 and "第1版" in "\n".join(_read(result.path)["top"])


def test_household_order_puts_the_head_first_then_the_oldest():
    frame = pd.DataFrame({
        "master_id": ["M1", "M2", "M3", "M4", "M5"],
        "name": ["甲", "乙", "丙", "丁", "戊"],
        "birth_date": [dt.date(1990, 1, 1), dt.date(1950, 1, 1), dt.date(1980, 1, 1), dt.date(1940, 1, 1), None],
        "age": [36, 76, 46, 86, None],
        "e_status": "在保",
        "is_head": [False, False, True, False, False],
        "town": ["城关镇", "城关镇", "城关镇", "城关镇", "城关镇"],
        "village": ["东湖村"] * 5,
        "group": ["10", "10", "10", "2", None],
        "house_no": ["5", "5", "5", "7", None],
    })
    ordered = ledgers.order_members(frame, ["household", "head", "birth_date"], households=True)
    # group 2 before group 10 (numerically); the head first, then by age; no house number: a household of its own, last
    assert ordered["master_id"].tolist() == ["M4", "M3", "M2", "M1", "M5"]
    assert ordered["household_no"].tolist() == [1, 2, 2, 2, 3]
    assert ordered["household_size"].tolist() == [1, 3, 3, 3, 1]

