"""``hub link`` on ad-hoc files and ``hub explain`` on the warehouse, as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import sqlalchemy as sa

HUB = str(Path(sys.executable).with_name("hub"))
HEADER = ["source", "source_record_id", "name", "id_number", "sex", "birth_date", "phone", "address"]


def _hub(*args, timeout=300):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def test_link_files_every_row_in_the_crosswalk(tmp_path):
    csv_rows = [
        ["mz", "1", "张伟", "11010519491231002X", "女", "1949-12-31", "13812345678", "城关镇东湖村3组12号"],
        ["mz", "2", "张伟", "34052419800101001X", "男", "1980-01-01", "13812345678", "城关镇东湖村3组12号"],
        ["mz", "3", "王芳", "无", "女", "1990-05-06", "", "石店镇西岗村1组3号"],
    ]
    (tmp_path / "mz.csv").write_bytes(
        pd.DataFrame(csv_rows, columns=HEADER).to_csv(index=False).encode("gbk"))
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["医保参保名单"])  # a title row above the header
    ws.append(HEADER)
    ws.append(["rs", "9", "張 偉", "11010519491231003X", "女性", "1949/12/31", "", "城关镇东湖村三组12号"])  # typo'd ID
    ws.append(["rs", "10", "张伟", "11010519491231002x", "2", "19491231", "138-1234-5678", ""])
    wb.save(tmp_path / "rs.xlsx")

    result = _hub("link", str(tmp_path / "mz.csv"), str(tmp_path / "rs.xlsx"), "--out", str(tmp_path / "xw.csv"))
    assert result.returncode == 0, result.stderr
    xw = pd.read_csv(tmp_path / "xw.csv", dtype=str, encoding="utf-8-sig")
    assert list(xw.columns) == ["source", "source_record_id", "master_id", "match_probability", "reason", "id_number_status"]
    assert len(xw) == 5
    master = dict(zip(xw["source"] + "/" + xw["source_record_id"], xw["master_id"]))
    assert master["mz/1"] == master["rs/10"] == master["rs/9"]  # one person: exact ID, and a typo'd ID
    assert master["mz/2"] != master["mz/1"]  # same name and phone, another person
    assert master["mz/3"] not in (master["mz/1"], master["mz/2"])
    assert set(xw["reason"]) <= {"exact_id", "probabilistic", "singleton", "split_constraint"}


def test_link_refuses_rows_it_could_not_report(tmp_path):
    rows = [["mz", "1", "张伟", "", "", "", "", ""], ["mz", "1", "李娜", "", "", "", "", ""]]
    (tmp_path / "dup.csv").write_text(pd.DataFrame(rows, columns=HEADER).to_csv(index=False), encoding="utf-8")
    result = _hub("link", str(tmp_path / "dup.csv"), "--out", str(tmp_path / "xw.csv"))
    assert result.returncode == 1
    assert "dup.csv line 2" in result.stderr and "dup.csv line 3" in result.stderr
    assert "张伟" not in result.stderr and "Traceback" not in result.stderr
    missing = tmp_path / "cols.csv"
    missing.write_text("source,source_record_id,name\nmz,1,张伟\n", encoding="utf-8")
    result = _hub("link", str(missing), "--out", str(tmp_path / "xw.csv"))
    assert result.returncode == 1 and "missing column" in result.stderr


def test_explain_a_master_and_a_pair(clean_warehouse, platforms, county, tmp_path):
    from tests.helpers import match_day0

    match_day0(clean_warehouse, platforms, county)
    with clean_warehouse.connect() as conn:
        master, left, right = conn.execute(sa.text(
            "SELECT master_id, min(source || '/' || source_record_id), max(source || '/' || source_record_id)"
            " FROM mpi.crosswalk WHERE match_rule = 'probabilistic' GROUP BY master_id LIMIT 1")).one()
        reviews = conn.execute(sa.text("SELECT count(*) FROM mpi.review_pair")).scalar_one()
    assert reviews >= 0
    shown = _hub("explain", master)
    assert shown.returncode == 0, shown.stderr
    assert "match weight" in shown.stdout and "total" in shown.stdout and "name" in shown.stdout
    page = tmp_path / "waterfall.html"
    pair = _hub("explain", "--pair", left, "--pair", right, "--html", str(page))
    assert pair.returncode == 0, pair.stderr
    assert page.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html") or "<html" in page.read_text()
    unknown = _hub("explain", "M999999999")
    assert unknown.returncode == 1 and "no records under master id" in unknown.stderr
