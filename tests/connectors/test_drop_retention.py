"""Processed drop files are kept owner-only for a retention, then deleted by the next ingest of their source.

Real files in a real drop folder (the ``drops`` connection points at it), the hub's real ingest of
``wj_liudong`` (CSV drops ``wj_liudong/LDRK_*.csv``) into the test PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest

from connectors.connections import ConnectionConfigError, connection_json
from hub import pipeline
from hub.errors import HubError

HEADER = "编号,姓名,公民身份号码,性别,出生日期,联系电话,现居住地址,户籍地区划,登记日期\r\n"
DAY = 86400


def csv_text(first: int, n: int = 5) -> bytes:
    rows = [f"LD{i:03d},居民{i},34152219800101{i:03d}X,男,1980年1月1日,138000{i:05d},城关镇{i}号,341522,2024-01-01\r\n"
            for i in range(first, first + n)]
    return (HEADER + "".join(rows)).encode("gbk")


def put(path: Path, content: bytes, *, days_old: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, 0o644)
    then = time.time() - days_old * DAY
    os.utime(path, (then, then))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def drops(tmp_path, monkeypatch, clean_warehouse):
    folder = tmp_path / "drops"
    (folder / "wj_liudong").mkdir(parents=True)
    monkeypatch.setenv("AIRFLOW_CONN_DROPS", connection_json(conn_type="fs", extra={"path": str(folder)}))
    monkeypatch.delenv("HUB_DROP_RETENTION_DAYS", raising=False)
    return folder


def test_processed_files_are_owner_only_and_deleted_after_the_retention(drops, monkeypatch, caplog):
    incoming = drops / "wj_liudong"
    first = put(incoming / "LDRK_20261201.csv", csv_text(0), days_old=45)  # exported long ago, taken today
    assert mode(first) == 0o644
    assert pipeline.ingest_source("wj_liudong")["landed"] == 5
    processed = incoming / "processed"
    taken = processed / first.name
    assert not first.exists() and taken.is_file()
    assert mode(processed) == 0o700 and mode(taken) == 0o600
    assert time.time() - taken.stat().st_mtime < 600  # the retention counts from when the hub took it

    old = put(processed / "LDRK_20261001.csv", csv_text(100), days_old=31)
    recent = put(processed / "LDRK_20261110.csv", csv_text(200), days_old=10)
    other = put(processed / "notes.txt", b"not a drop of this source", days_old=90)
    elsewhere = put(drops / "mz_canji" / "processed" / "canji_20261001.xlsx", b"another source's", days_old=90)
    put(incoming / "LDRK_20261202.csv", csv_text(0, 6), days_old=1)
    with caplog.at_level(logging.INFO, logger="connectors.files"):
        assert pipeline.ingest_source("wj_liudong")["landed"] == 1
    assert not old.exists()
    assert recent.exists() and taken.exists() and (processed / "LDRK_20261202.csv").exists()
    assert other.exists() and elsewhere.exists()  # only the source's own drops are its to delete
    assert "wj_liudong: 1 processed file(s) older than 30 days deleted" in caplog.text
    assert mode(processed / "LDRK_20261202.csv") == 0o600

    monkeypatch.setenv("HUB_DROP_RETENTION_DAYS", "7")  # the next ingest, with nothing new dropped
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="connectors.files"):
        assert pipeline.ingest_source("wj_liudong")["received"] == 0
    assert not recent.exists() and taken.exists() and (processed / "LDRK_20261202.csv").exists()
    assert "wj_liudong: 1 processed file(s) older than 7 days deleted" in caplog.text


def test_a_completion_marker_goes_with_its_file(drops, monkeypatch):
    from connectors.files import expire_processed
    from connectors.registry import get_source

    source = get_source("wj_liudong").model_copy(update={"completion_marker": "{name}.ok"})
    processed = drops / "wj_liudong" / "processed"
    data = put(processed / "LDRK_20261001.csv", csv_text(0), days_old=40)
    marker = put(processed / "LDRK_20261001.csv.ok", b"", days_old=1)
    assert expire_processed(source, drops, 30) == 1
    assert not data.exists() and not marker.exists()


def test_a_rejected_file_and_its_reason_are_owner_only(drops):
    bad = put(drops / "wj_liudong" / "LDRK_20261203.csv", "编号,编号\r\n1,2\r\n".encode("gbk"), days_old=1)
    with pytest.raises(HubError):
        pipeline.ingest_source("wj_liudong")
    rejected = drops / "wj_liudong" / "rejected"
    assert mode(rejected) == 0o700
    assert mode(rejected / bad.name) == 0o600 and mode(rejected / f"{bad.name}.reason.txt") == 0o600


def test_a_retention_that_is_not_a_number_of_days_is_refused(drops, monkeypatch):
    kept = put(drops / "wj_liudong" / "processed" / "LDRK_20261001.csv", csv_text(0), days_old=400)
    for value in ("thirty", "-1", "inf"):
        monkeypatch.setenv("HUB_DROP_RETENTION_DAYS", value)
        with pytest.raises(ConnectionConfigError) as refused:  # the CLI and the DAGs show it as a setting to fix
            pipeline.ingest_source("wj_liudong")
        assert "HUB_DROP_RETENTION_DAYS" in str(refused.value) and "e.g. 30" in str(refused.value)
    assert kept.exists()
