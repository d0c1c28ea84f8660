"""Identifiers stay text, outputs are formula-safe, header-only files are an empty result.

* An 18-digit ID number typed into a numeric Excel cell (or sent as a JSON/SQL number) keeps 15-17
  significant digits: it is ``precision_lost`` with no clean number, in ``hub standardize``,
  ``hub link`` and std.resident — never someone else's valid number.
* A source field holding ``=HYPERLINK(...)`` reaches no CSV or XLSX the hub writes as a formula.
* ``hub link`` and ``hub standardize`` on a file with a header row only exit 0 with an empty result.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from connectors.connections import connection_json
from schemas.id_number import check_character

HUB = str(Path(sys.executable).with_name("hub"))
COLUMNS = ["source", "source_record_id", "name", "id_number", "sex", "birth_date", "phone", "address"]
FORMULA = '=HYPERLINK("http://x","y")'
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# Two different people whose valid ID numbers are the same double: typed into numeric cells, both
# read back as 341522199001010688 — itself a valid number (a third person's).
ID_A, ID_B, ROUNDED = "341522199001010661", "341522199001010696", "341522199001010688"
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周丽", "吴军", "徐婷", "孙涛"]


def _id(birth: dt.date, seq: int) -> str:
    body = f"341522{birth:%Y%m%d}{seq:03d}"
    return body + check_character(body)


def _live(text: str) -> bool:
    """Text a spreadsheet would run as a formula: a trigger character first, and more than a signed number."""
    return bool(text) and text.startswith(TRIGGERS) and not re.fullmatch(r"[+-][0-9]+(?:\.[0-9]+)?", text)


def _hub(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout)


def _read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _as_text_cells(ws) -> None:
    """Cells whose text starts with ``=`` as the string cells a platform's export writes (openpyxl would
    otherwise store them as formulas, which a reader sees as their cached value: none)."""
    for row in ws.iter_rows():
        for cell in row:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"


def _numeric_id_workbook(path: Path) -> dict[str, str]:
    """An ad-hoc XLSX whose ID numbers sit in numeric cells; returns record id -> the true ID number."""
    truth = {"a": ID_A, "b": ID_B, "c": _id(dt.date(1985, 3, 2), 11), "d": "341522850302013"}
    wb = Workbook()
    ws = wb.active
    ws.append(COLUMNS)
    ws.append(["t", "a", "张伟", float(ID_A), "女", "1990-01-01", "13800138000", "城关镇东湖村1组1号"])
    ws.append(["t", "b", "李强", float(ID_B), "男", "1990-01-01", "13900139000", "城关镇东湖村2组5号"])
    ws.append(["t", "c", "王芳", truth["c"], "男", "1985-03-02", "13700137000", "城关镇东湖村3组7号"])
    ws.append(["t", "d", "赵敏", int(truth["d"]), "男", "1985-03-02", "13600136000", "城关镇东湖村4组9号"])
    ws.append(["t", "e", "陈静", "3.41522E+17", "女", "1990-01-01", "", ""])
    ws.append(["t", "f", "刘洋", "341522199001017783.0", "男", "1990-01-01", "", ""])
    ws.append(["t", "g", FORMULA, "+86 138 0013 8000", "-1", "@SUM(1)", "+86 138 0013 8000", "\tx"])
    _as_text_cells(ws)
    wb.save(path)
    return truth


def _assert_no_invented_ids(rows: list[dict], truth: dict[str, str]) -> None:
    valid = [r for r in rows if r["id_number_status"] in ("valid", "upgraded_from_15")]
    numbers = [r["id_number"] for r in valid]
    assert len(numbers) == len(set(numbers)), "two records got the same valid ID number"
    for r in rows:
        if r["id_number"]:
            assert r["id_number"] == truth.get(r["source_record_id"]), (r["source_record_id"], r["id_number"])
        assert ROUNDED not in r.values()


def _upgraded(id15: str) -> str:
    body = id15[:6] + "19" + id15[6:]
    return body + check_character(body)


@pytest.fixture(scope="module")
def numeric_xlsx(tmp_path_factory):
    """The numeric-cell workbook through ``hub standardize`` and ``hub link`` (each run once, as a user would)."""
    folder = tmp_path_factory.mktemp("numeric_ids")
    src = folder / "ids.xlsx"
    truth = _numeric_id_workbook(src)
    header_only = folder / "header_only.csv"
    header_only.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    runs = {"standardize": (src, "standardize"), "link": (src, "link"), "header_only": (header_only, "link")}
    started = {name: subprocess.Popen([HUB, command, str(path), "--out", str(folder / f"{name}.csv")],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, (path, command) in runs.items()}  # side by side: each spends its time importing
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=180)
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        out = folder / f"{name}.csv"
        lines = out.read_text(encoding="utf-8-sig").splitlines() if out.exists() else []
        runs[name] = (result, {r["source_record_id"]: r for r in csv.DictReader(lines)}, lines)
    return {"src": src, "truth": truth, **runs}


def test_numeric_id_cells_standardize_as_precision_lost(numeric_xlsx):
    result, rows, _ = numeric_xlsx["standardize"]
    assert result.returncode == 0, result.stderr[-2000:]
    truth = numeric_xlsx["truth"]
    status = {k: r["id_number_status"] for k, r in rows.items()}
    assert status == {"a": "precision_lost", "b": "precision_lost", "c": "valid", "d": "upgraded_from_15",
                      "e": "precision_lost", "f": "precision_lost", "g": "malformed"}
    assert all(rows[k]["id_number"] == "" for k in "abef")
    _assert_no_invented_ids(list(rows.values()), {**truth, "d": _upgraded(truth["d"])})
    assert "precision_lost" in result.stdout


def test_numeric_id_cells_link_as_precision_lost(numeric_xlsx):
    result, rows, _ = numeric_xlsx["link"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(rows) == set("abcdefg")
    assert {k for k, r in rows.items() if r["id_number_status"] == "precision_lost"} == set("abef")
    assert rows["a"]["master_id"] != rows["b"]["master_id"]
    assert "precision_lost" in result.stderr and ID_A not in result.stderr + result.stdout


def test_standardize_xlsx_and_link_outputs_hold_no_formula(numeric_xlsx):
    book = load_workbook(numeric_xlsx["src"])
    assert FORMULA in [c.value for row in book.active.iter_rows() for c in row]  # the input holds the formula's text
    for command in ("standardize", "link"):
        rows = numeric_xlsx[command][1]
        assert not [v for r in rows.values() for v in r.values() if _live(v)], command
    std = numeric_xlsx["standardize"][1]["g"]
    assert std["name_raw"] == "'" + FORMULA and std["phone_raw"] == "'+86 138 0013 8000"
    assert std["sex_raw"] == "-1" and std["birth_date_raw"] == "'@SUM(1)"  # a plain signed number stays as it is


def test_standardize_csv_is_formula_safe(tmp_path):
    from hub.standardize_file import standardize_file

    src, out = tmp_path / "in.csv", tmp_path / "std.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerow(["t", FORMULA, FORMULA, _id(dt.date(1985, 3, 2), 11), "男", "1985-03-02", "+86 138 0013 8000",
                    "@cmd|' /C calc'!A0"])
        w.writerow(["t", "2", "王芳", "-3+4", "女", "=1+1", "\t=1", "城关镇东湖村3组7号"])
        w.writerow(["t", "3", "李娜", "", "女", "1990-01-01", "13812345678", "-"])
    standardize_file(src, out)
    rows = _read_csv(out)
    assert not [v for r in rows for v in r.values() if _live(v)]
    assert rows[0]["source_record_id"] == "'" + FORMULA and rows[0]["name_raw"] == "'" + FORMULA
    assert rows[0]["phone_raw"] == "'+86 138 0013 8000" and rows[1]["birth_date_raw"] == "'=1+1"
    assert rows[1]["id_number_raw"] == "'-3+4" and rows[0]["address_raw"] == "'@cmd|' /C calc'!A0"
    # the clean E.164 number is a plain signed number: written as it is
    assert rows[2]["phone"] == "+8613812345678" and rows[2]["address_raw"] == "'-"


def test_link_previous_crosswalk_reads_guarded_ids_back(tmp_path):
    from hub.link_files import link_files

    src, first, second = tmp_path / "in.csv", tmp_path / "x1.csv", tmp_path / "x2.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerow(["t", "@7", "王芳", _id(dt.date(1985, 3, 2), 11), "女", "1985-03-02", "", ""])
        w.writerow(["t", "8", "张伟", _id(dt.date(1970, 5, 6), 21), "男", "1970-05-06", "", ""])
    link_files([src], first)
    link_files([src], second, previous=first)
    before = {r["source_record_id"]: r["master_id"] for r in _read_csv(first)}
    after = {r["source_record_id"]: r["master_id"] for r in _read_csv(second)}
    assert before == after and set(after) == {"'@7", "8"}


def test_header_only_file(numeric_xlsx, tmp_path):
    from hub.link_files import link_files
    from hub.standardize_file import standardize_file

    result, rows, lines = numeric_xlsx["header_only"]  # `hub link` on a header-only CSV
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "0 records" in result.stdout and rows == {}
    assert lines == ["source,source_record_id,master_id,match_probability,reason,id_number_status"]

    src, book = tmp_path / "empty.csv", tmp_path / "empty.xlsx"
    src.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    wb = Workbook()
    wb.active.append(COLUMNS)
    wb.save(book)
    link_out, std_out = tmp_path / "crosswalk.csv", tmp_path / "std.csv"
    assert link_files([src, book], link_out)["records"] == 0  # `hub link` prints "0 records → 0 master ids"
    header = "source,source_record_id,master_id,match_probability,reason,id_number_status"
    assert link_out.read_text(encoding="utf-8-sig").splitlines() == [header]
    for path in (src, book):
        assert standardize_file(path, std_out)["rows"] == 0
        lines = std_out.read_text(encoding="utf-8-sig").splitlines()
        assert len(lines) == 1 and lines[0].startswith("source,source_record_id,name_raw")
    # a header-only file beside a file with one record: the record is linked
    one = tmp_path / "one.csv"
    one.write_text(",".join(COLUMNS) + "\nt,1,王芳,,女,1985-03-02,,\n", encoding="utf-8")
    assert link_files([src, one], link_out)["records"] == 1
    assert [r["source_record_id"] for r in _read_csv(link_out)] == ["1"]


# ---------------------------------------------------------------- the pipeline: std.resident and a ledger
def _canji_drop(folder: Path) -> dict[str, str]:
    """A 残疾人 ledger drop: twelve residents with ID numbers as text, one typed into a numeric cell,
    and source fields holding formulas. Returns 残疾证号 -> the true ID number."""
    (folder / "mz_canji").mkdir(parents=True)
    wb = Workbook()
    ws = wb.active
    ws.append(["序号", "残疾证号", "姓名", "身份证号", "性别", "出生日期", "残疾类别", "残疾等级", "家庭住址", "联系电话"])
    truth = {}
    for i, name in enumerate(NAMES):
        birth = dt.date(1950 + 2 * i, 1 + i % 12, 1 + i)
        sex = 1 + i % 2
        number = _id(birth, 10 + i * 2 + (1 if sex == 1 else 0))
        card = f"CJ{i:04d}"
        truth[card] = number
        ws.append([i + 1, card, name, number, "男" if sex == 1 else "女", f"{birth:%Y/%m/%d}", "肢体",
                   FORMULA if i == 0 else "二级", f"城关镇东湖村{1 + i % 3}组{i + 1}号",
                   "+86 138 0013 8000" if i == 1 else f"1380013{i:04d}"])
    birth = dt.date(1990, 1, 1)
    truth["CJ0099"] = ID_A
    ws.append([13, "CJ0099", "钱红", float(ID_A), "女", f"{birth:%Y/%m/%d}", "视力", "三级", "城关镇东湖村1组20号",
               "13800139999"])
    _as_text_cells(ws)
    path = folder / "mz_canji" / "canji_20261201.xlsx"
    wb.save(path)
    an_hour_ago = time.time() - 3600  # a file written and closed last night, not one still being copied
    os.utime(path, (an_hour_ago, an_hour_ago))
    return truth


def _birth_db(path: Path) -> None:
    """The birth registration's legacy database, where some ID numbers were stored as floating-point numbers."""
    con = sqlite3.connect(path)
    # XSE_SFZH without a declared type keeps each value's own type: floats for two rows, text for the others
    con.execute("CREATE TABLE CSDJ (CSDJ_ID TEXT PRIMARY KEY, XSE_XM TEXT, XSE_SFZH, XB TEXT, CSRQ TEXT,"
                " LXDH TEXT, JTZZ TEXT, MQ_XM TEXT, MQ_SFZH TEXT, GXSJ TEXT, SCBZ TEXT)")
    text_ids = [_id(dt.date(2026, 11, 20), 31), _id(dt.date(2026, 11, 21), 42)]
    con.executemany("INSERT INTO CSDJ VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
        ("B1", "孙悦", float(ID_B), "1", "1990-01-01", "", "城关镇东湖村2组3号", "", "", "2026-12-01 08:00:00", "0"),
        ("B2", "周洋", float(ID_A), "2", "1990-01-01", "", "城关镇东湖村2组4号", "", "", "2026-12-01 08:00:00", "0"),
        ("B3", "吴迪", text_ids[0], "1", "2026-11-20", "", "城关镇东湖村2组5号", "", "", "2026-12-01 08:00:00", "0"),
        ("B4", "郑好", text_ids[1], "2", "2026-11-21", "", "城关镇东湖村2组6号", "", "", "2026-12-01 08:00:00", "0"),
    ])
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def published(engine, tmp_path_factory):
    """mz_canji (file) and wj_chusheng (SQL) ingested, standardized, matched, gated and published."""
    from hub import pipeline
    from tests.helpers import empty_warehouse

    root = tmp_path_factory.mktemp("e_drops")
    truth = _canji_drop(root / "drops")
    _birth_db(root / "birth.db")
    env = {"AIRFLOW_CONN_DROPS": connection_json(conn_type="fs", extra={"path": str(root / "drops")}),
           "AIRFLOW_CONN_LEGACY_BIRTH": connection_json(conn_type="sqlite", host=str(root / "birth.db"))}
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    empty_warehouse(engine)
    try:
        for name in ("mz_canji", "wj_chusheng"):
            pipeline.ingest_source(name)
        pipeline.standardize_sources(["mz_canji", "wj_chusheng"])
        pipeline.build_master_index()
        gate = pipeline.run_gate()
        release = pipeline.publish_release(gate["validation_run_id"])
        assert release["outcome"] == "published", release
        yield {"engine": engine, "truth": truth, "release_no": release["release_no"], "out": root / "ledgers"}
    finally:
        mp.undo()


def test_pipeline_numeric_ids_are_precision_lost(published):
    with published["engine"].connect() as conn:
        std = conn.execute(sa.text("SELECT source, source_record_id, id_number, id_number_status, id_number_raw"
                                   " FROM std.resident")).mappings().all()
        golden = conn.execute(sa.text("SELECT id_number FROM mpi.golden WHERE id_number IS NOT NULL")).scalars().all()
    by_key = {(r["source"], r["source_record_id"]): r for r in std}
    for key in [("mz_canji", "CJ0099"), ("wj_chusheng", "B1"), ("wj_chusheng", "B2")]:
        assert by_key[key]["id_number_status"] == "precision_lost", by_key[key]
        assert by_key[key]["id_number"] is None
    assert ROUNDED not in {r["id_number"] for r in std} | set(golden)
    true_numbers = set(published["truth"].values()) | {_id(dt.date(2026, 11, 20), 31), _id(dt.date(2026, 11, 21), 42)}
    assert {r["id_number"] for r in std if r["id_number"]} <= true_numbers
    assert len(golden) == len(set(golden))


def test_ledger_xlsx_holds_no_formula(published):
    out = published["out"]
    out.mkdir()
    result = _hub("ledger", "canji", "--community", "城关镇", "--out", str(out), "--as-of", "2026-12-02")
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    (path,) = out.glob("*.xlsx")
    book = load_workbook(path)
    cells = [c for ws in book.worksheets for row in ws.iter_rows() for c in row if c.value is not None]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert "'" + FORMULA in texts
    assert not [t for t in texts if _live(t)]
    assert ROUNDED not in texts and ID_A not in texts
