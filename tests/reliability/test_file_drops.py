"""File drops hold at the edges: a file is a snapshot only when it parsed whole, bad rows and bad
files are set aside, and every failure is one line.

Each test writes a few dozen records of its own into a drop folder (the ``drops`` connection points
at it) and runs the hub's ingest on it: ``wj_liudong`` (CSV in GBK, key 编号) and ``mz_canji``
(XLSX ledger, key 残疾证号). Files are dated in the past so that no test waits for them to settle,
except the one about files still being written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from connectors.connections import connection_json
from connectors.files import fetch
from connectors.registry import FileSource, get_source
from hub import pipeline
from hub.errors import HubError

HUB = str(Path(sys.executable).with_name("hub"))
HEADER = ["编号", "姓名", "公民身份号码", "性别", "出生日期", "联系电话", "现居住地址", "户籍地区划", "登记日期"]
LEDGER = ["序号", "残疾证号", "姓名", "身份证号", "性别", "出生日期", "残疾类别", "残疾等级", "家庭住址", "联系电话"]
ID_RE = re.compile(r"\d{17}[\dXx]")


def person(i: int, phone: str | None = None) -> list[str]:
    return [f"LD{i:03d}", f"居民{i}", f"3415221980{i % 12 + 1:02d}01{i:03d}X"[:18], "男" if i % 2 else "女",
            "1980年1月1日", phone or f"138000{i:05d}", f"城关镇{i}号", "341522", "2024-01-01"]


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    return "".join(",".join(r) + "\r\n" for r in [header, *rows])


@pytest.fixture
def drops(tmp_path, monkeypatch, clean_warehouse):
    folder = tmp_path / "drops"
    (folder / "wj_liudong").mkdir(parents=True)
    (folder / "mz_canji").mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_DROPS", connection_json(conn_type="fs", extra={"path": str(folder)}))
    return folder


def drop(folder: Path, name: str, content: str | bytes, *, age: float = 60) -> Path:
    """Write a file into the drop folder, last changed ``age`` seconds ago."""
    path = folder / name
    path.write_bytes(content.encode("gbk") if isinstance(content, str) else content)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def facts(engine, source: str = "wj_liudong") -> dict:
    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql), {"s": source}).all()  # noqa: E731
        return {
            "live": {r[0] for r in q("SELECT source_record_id FROM raw.current_record WHERE source = :s"
                                     " AND NOT deleted")},
            "tombstones": {r[0] for r in q("SELECT source_record_id FROM raw.tombstone WHERE source = :s"
                                           " AND revoked_in IS NULL")},
            "quarantine": [tuple(r) for r in q("SELECT reason_code, detail FROM raw.quarantine WHERE source = :s"
                                               " ORDER BY quarantine_id")],
            "batches": [dict(r._mapping) for r in q(
                "SELECT status, error, received, landed, quarantined, duplicates, tombstones FROM raw.load_batch"
                " WHERE source = :s ORDER BY batch_id")],
            "payloads": {r[0]: r[1] for r in q("SELECT source_record_id, payload FROM raw.current_record"
                                               " WHERE source = :s")},
        }


def reconciles(batch: dict) -> bool:
    return batch["received"] == batch["landed"] + batch["quarantined"] + batch["duplicates"]


def first_day(drops: Path, n: int = 40) -> None:
    drop(drops / "wj_liudong", "LDRK_20261201.csv", csv_text([person(i) for i in range(n)]))
    result = pipeline.ingest_source("wj_liudong")
    assert result["landed"] == n and result["tombstones"] == 0


# 1. completeness before deletion ------------------------------------------------------------------------------

def test_a_stray_quote_lands_the_good_rows_deletes_nothing_and_fails_in_one_line(drops, clean_warehouse):
    first_day(drops)
    rows = [person(i, phone="13999999999" if i == 30 else None) for i in range(40)]
    rows[19][1] = '"王某'  # a quote that opens a field and never closes: csv would swallow the rest of the file
    path = drop(drops / "wj_liudong", "LDRK_20261202.csv", csv_text(rows))
    with pytest.raises(HubError) as failed:
        pipeline.ingest_source("wj_liudong")
    message = str(failed.value)
    assert "\n" not in message and "wj_liudong" in message and "LDRK_20261202.csv" in message
    assert "line 21" in message and not ID_RE.search(message) and "王某" not in message
    f = facts(clean_warehouse)
    assert f["tombstones"] == set() and len(f["live"]) == 40  # nothing deleted
    assert f["payloads"]["LD030"]["联系电话"] == "13999999999"  # the rows after the quote landed
    assert [r for r, _ in f["quarantine"]] == ["unclosed_quote"]
    last = f["batches"][-1]
    assert last["status"] == "failed" and "LDRK_20261202.csv" in last["error"]
    assert (last["received"], last["landed"], last["quarantined"], last["duplicates"]) == (40, 1, 1, 38)
    assert reconciles(last)
    assert not path.exists() and (path.parent / "rejected" / path.name).exists()
    assert "line 21" in (path.parent / "rejected" / f"{path.name}.reason.txt").read_text(encoding="utf-8")


def test_a_file_cut_off_mid_copy_waits_for_the_next_complete_file(drops, clean_warehouse, monkeypatch, caplog):
    first_day(drops)
    source = get_source("wj_liudong").model_copy(update={"on_incomplete": "wait"})
    monkeypatch.setattr(pipeline, "get_source", lambda name: source)
    whole = csv_text([person(i) for i in range(40)]).encode("gbk")
    cut = whole.index("城".encode("gbk"), int(len(whole) * 0.92)) + 1  # inside a character, no line break at the end
    drop(drops / "wj_liudong", "LDRK_20261202.csv", whole[:cut])
    result = pipeline.ingest_source("wj_liudong")  # waits: no error
    assert result["tombstones"] == 0 and result["quarantined"] == 1
    assert any("waiting for the next complete file" in r.getMessage() for r in caplog.records)
    f = facts(clean_warehouse)
    assert f["tombstones"] == set() and len(f["live"]) == 40
    assert f["quarantine"][0][0] == "truncated_line"
    assert f["batches"][-1]["status"] == "succeeded" and "waiting" in f["batches"][-1]["error"]
    assert reconciles(f["batches"][-1])
    # the next complete file is the snapshot: the two records it lacks were deleted at the source
    drop(drops / "wj_liudong", "LDRK_20261203.csv", csv_text([person(i) for i in range(38)]))
    assert pipeline.ingest_source("wj_liudong")["tombstones"] == 2
    assert facts(clean_warehouse)["tombstones"] == {"LD038", "LD039"}


def test_an_incomplete_file_and_the_complete_one_after_it_in_one_run(drops, clean_warehouse, monkeypatch):
    first_day(drops)
    source = get_source("wj_liudong").model_copy(update={"on_incomplete": "wait"})
    monkeypatch.setattr(pipeline, "get_source", lambda name: source)
    rows = [person(i, phone="13911111111" if i == 30 else None) for i in range(40)]
    rows[10][1] = '"王某'
    drop(drops / "wj_liudong", "LDRK_20261202.csv", csv_text(rows))
    drop(drops / "wj_liudong", "LDRK_20261203.csv", csv_text([person(i, phone="13922222222" if i == 30 else None)
                                                              for i in range(39)]))
    result = pipeline.ingest_source("wj_liudong")
    assert (result["quarantined"], result["tombstones"]) == (1, 1)  # the stray quote; LD039, gone in the later file
    f = facts(clean_warehouse)
    assert f["payloads"]["LD030"]["联系电话"] == "13922222222" and f["tombstones"] == {"LD039"}


def test_a_file_far_smaller_than_the_last_snapshot_deletes_nothing(drops, clean_warehouse):
    first_day(drops)
    path = drop(drops / "wj_liudong", "LDRK_20261202.csv", csv_text([person(i) for i in range(20)]))
    with pytest.raises(HubError, match=r"LDRK_20261202.csv: holds 20 records, fewer than 80% of the 40"):
        pipeline.ingest_source("wj_liudong")
    f = facts(clean_warehouse)
    assert f["tombstones"] == set() and len(f["live"]) == 40
    assert (path.parent / "rejected" / f"{path.name}.reason.txt").exists()


# 2. received counts physical records ------------------------------------------------------------------------------

def test_received_counts_the_records_of_the_file_a_quoted_line_break_once(drops, clean_warehouse):
    rows = [person(i) for i in range(10)]
    rows[3][6] = '"城关镇\n幸福村3号"'  # a quoted address over two lines: one record
    rows[6][1] = '"赵某'  # a stray quote: its line is one record, the lines after it too
    drop(drops / "wj_liudong", "LDRK_20261201.csv", csv_text(rows))
    with pytest.raises(HubError):
        pipeline.ingest_source("wj_liudong")
    batch = facts(clean_warehouse)["batches"][-1]
    assert (batch["received"], batch["landed"], batch["quarantined"]) == (10, 9, 1)
    assert facts(clean_warehouse)["payloads"]["LD003"]["现居住地址"] == "城关镇\n幸福村3号"


# 3. a bad row never deletes its record ------------------------------------------------------------------------------

def test_short_and_long_rows_are_quarantined_and_keep_their_records(drops, clean_warehouse):
    first_day(drops)
    rows = [person(i) for i in range(39)]  # LD039 is gone at the source
    rows[5] = rows[5][:4]  # short
    rows[6] = [*rows[6], "多出来的"]  # long
    drop(drops / "wj_liudong", "LDRK_20261202.csv", csv_text(rows))
    result = pipeline.ingest_source("wj_liudong")  # the file is whole: a snapshot
    assert result["quarantined"] == 2 and result["tombstones"] == 1
    f = facts(clean_warehouse)
    assert f["tombstones"] == {"LD039"} and {"LD005", "LD006"} <= f["live"]
    assert [r for r, _ in f["quarantine"]] == ["bad_row_shape", "bad_row_shape"]


# 4. files still being written are not read yet ------------------------------------------------------------------------

def test_a_file_still_growing_is_left_for_a_later_run(drops, clean_warehouse):
    folder = drops / "wj_liudong"
    drop(folder, "LDRK_20261201.csv", csv_text([person(i) for i in range(10)]))
    growing = folder / "LDRK_20261202.csv"
    growing.write_bytes(csv_text([person(i) for i in range(10, 20)]).encode("gbk"))
    stop = threading.Event()

    def write_on():  # a copy in progress: a line every 0.2 s
        i = 20
        while not stop.is_set():
            with growing.open("ab") as f:
                f.write(",".join(person(i)).encode("gbk") + b"\r\n")
            i += 1
            time.sleep(0.2)

    writer = threading.Thread(target=write_on)
    writer.start()
    try:
        result = pipeline.ingest_source("wj_liudong")
    finally:
        stop.set()
        writer.join()
    assert result["landed"] == 10 and growing.exists()  # the settled file only
    assert not (folder / "processed" / growing.name).exists()
    again = pipeline.ingest_source("wj_liudong")  # written completely now
    assert again["landed"] > 10 and not growing.exists()


def test_a_declared_completion_marker_is_waited_for(tmp_path):
    source = get_source("wj_liudong").model_copy(update={"completion_marker": "{name}.ok", "settle_seconds": 0})
    (tmp_path / "wj_liudong").mkdir()
    path = drop(tmp_path / "wj_liudong", "LDRK_20261201.csv", csv_text([person(i) for i in range(3)]))
    assert list(fetch(source, tmp_path, already=frozenset())) == []
    (path.parent / "LDRK_20261201.csv.ok").write_text("")
    chunks = list(fetch(source, tmp_path, already=frozenset()))
    assert [len(c.records) for c in chunks] == [3] and chunks[-1].snapshot_key
    chunks[-1].after_commit()
    assert not path.exists() and (path.parent / "processed" / "LDRK_20261201.csv.ok").exists()


def test_a_completion_marker_must_name_a_file_beside_the_data_file():
    settings = get_source("wj_liudong").model_dump()
    for marker in ("{name}.ok", "{stem}.done"):
        assert FileSource.model_validate({**settings, "completion_marker": marker}).completion_marker == marker
    for marker in ("ready.ok", "{file}.ok", "../{name}.ok"):
        with pytest.raises(ValidationError, match="completion_marker"):
            FileSource.model_validate({**settings, "completion_marker": marker})


# 5. duplicate or blank header names --------------------------------------------------------------------------------

def test_duplicate_and_unnamed_columns_reject_the_file_and_later_files_load(drops, clean_warehouse):
    folder = drops / "wj_liudong"
    twice = [*HEADER[:-1], "姓名"]
    drop(folder, "LDRK_20261201.csv", csv_text([person(i) for i in range(5)], header=twice))
    blank = [*HEADER[:-1], ""]
    drop(folder, "LDRK_20261202.csv", csv_text([person(i) for i in range(5)], header=blank))
    drop(folder, "LDRK_20261203.csv", csv_text([person(i) for i in range(6)]))
    with pytest.raises(HubError) as failed:
        pipeline.ingest_source("wj_liudong")
    message = str(failed.value)
    assert "LDRK_20261201.csv: column '姓名' appears 2 times" in message
    assert "LDRK_20261202.csv: column 9 has no name in the header but holds data" in message
    assert len(facts(clean_warehouse)["live"]) == 6  # the later file loaded
    assert sorted(p.name for p in (folder / "rejected").iterdir()) == [
        "LDRK_20261201.csv", "LDRK_20261201.csv.reason.txt", "LDRK_20261202.csv", "LDRK_20261202.csv.reason.txt"]
    assert (folder / "processed" / "LDRK_20261203.csv").exists()


# 6. unreadable workbooks, and one line from the command --------------------------------------------------------------

def ledger_bytes(tmp_path: Path, rows: list[list]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["霍邱县残疾人基本信息台账"])
    ws.append(LEDGER)
    for row in rows:
        ws.append(row)
    path = tmp_path / "ledger.xlsx"
    wb.save(path)
    return path.read_bytes()


def ledger_row(i: int, id_number) -> list:
    return [i, f"CJ{i:04d}", f"残疾人{i}", id_number, "男", "1970/01/01", "肢体", "二级", f"城关镇{i}号", "13900000000"]


def test_corrupt_and_encrypted_workbooks_are_rejected_and_the_newer_one_loads(drops, clean_warehouse, tmp_path):
    folder = drops / "mz_canji"
    good = ledger_bytes(tmp_path, [ledger_row(i, f"34152219700101{i:03d}X"[:18]) for i in range(1, 9)])
    drop(folder, "canji_20261201.xlsx", good[: len(good) // 2])  # cut off mid-copy
    drop(folder, "canji_20261202.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4000))  # password-protected
    drop(folder, "canji_20261203.xlsx", good)
    result = subprocess.run([HUB, "ingest", "mz_canji"], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "mz_canji" in errors[0] and "canji_20261201.xlsx" in errors[0] and "canji_20261202.xlsx" in errors[0]
    assert not ID_RE.search(result.stderr + result.stdout)
    assert len(facts(clean_warehouse, "mz_canji")["live"]) == 8
    assert (folder / "processed" / "canji_20261203.xlsx").exists()
    assert {p.name for p in (folder / "rejected").glob("*.reason.txt")} == {
        "canji_20261201.xlsx.reason.txt", "canji_20261202.xlsx.reason.txt"}


# 7. a 1 MB cell ----------------------------------------------------------------------------------------------------------

def test_a_one_megabyte_cell_neither_crashes_nor_loses_the_good_rows(drops, clean_warehouse):
    rows = [person(i) for i in range(10)]
    rows[4][6] = "长" * (1 << 20)
    drop(drops / "wj_liudong", "LDRK_20261201.csv", csv_text(rows))
    result = pipeline.ingest_source("wj_liudong")
    f = facts(clean_warehouse)
    assert result["landed"] == 9 and len(f["live"]) == 9 and reconciles(f["batches"][-1])
    assert [r for r, _ in f["quarantine"]] == ["field_too_long"]


# 8. a failed move to processed/ --------------------------------------------------------------------------------------

def test_a_failed_move_aside_is_one_line_and_the_next_run_only_moves_the_file(drops, clean_warehouse):
    folder = drops / "wj_liudong"
    path = drop(folder, "LDRK_20261201.csv", csv_text([person(i) for i in range(5)]))
    (folder / "processed").write_text("in the way")  # processed/ cannot be made: the move fails
    with pytest.raises(HubError) as failed:
        pipeline.ingest_source("wj_liudong")
    message = str(failed.value)
    assert "\n" not in message and message.startswith("wj_liudong: LDRK_20261201.csv: could not be moved into "
                                                      "processed/")
    assert "committed" in message and path.exists()
    assert facts(clean_warehouse)["batches"][-1]["status"] == "succeeded"
    (folder / "processed").unlink()
    again = pipeline.ingest_source("wj_liudong")
    assert again["received"] == 0 and not path.exists() and (folder / "processed" / path.name).exists()


# 9. numeric ID cells in Excel ------------------------------------------------------------------------------------

def test_numeric_id_cells_never_become_digits_the_file_did_not_hold(drops, clean_warehouse, tmp_path):
    as_text = "341522197001010017"
    rows = [ledger_row(1, as_text)]
    rows += [ledger_row(i, float(f"3.4152219700101{i}e+17")) for i in range(2, 8)]  # Excel keeps 15 digits
    rows.append(ledger_row(8, 34152219700101.0))  # a whole number Excel holds exactly
    drop(drops / "mz_canji", "canji_20261201.xlsx", ledger_bytes(tmp_path, rows))
    pipeline.ingest_source("mz_canji")
    ids = {p["残疾证号"]: p["身份证号"] for p in facts(clean_warehouse, "mz_canji")["payloads"].values()}
    assert ids["CJ0001"] == as_text and ids["CJ0008"] == "34152219700101"
    assert [ids[f"CJ{i:04d}"] for i in range(2, 8)] == [f"3.4152219700101{i}e+17" for i in range(2, 8)]
    assert [v for v in ids.values() if re.fullmatch(r"\d{18}", v)] == [as_text]


def test_an_older_export_arriving_late_is_rejected_unread(drops, clean_warehouse):
    first_day(drops)  # LDRK_20261201.csv, 40 records
    drop(drops / "wj_liudong", "LDRK_20261202.csv", csv_text([person(i) for i in range(38)]))
    assert pipeline.ingest_source("wj_liudong")["tombstones"] == 2
    before = facts(clean_warehouse)
    late = drop(drops / "wj_liudong", "LDRK_20261130.csv", csv_text([person(i, phone="13911111111") for i in range(40)]))
    with pytest.raises(HubError) as failed:
        pipeline.ingest_source("wj_liudong")
    message = str(failed.value)
    assert "\n" not in message and "LDRK_20261130.csv: older than LDRK_20261202.csv" in message
    after = facts(clean_warehouse)
    assert after["live"] == before["live"] and after["payloads"] == before["payloads"]  # nothing brought back
    assert (late.parent / "rejected" / late.name).exists()
