"""Cursors that cannot be poisoned: update times from the future, same-second late records, and the
scheduled complete extract of a source without a deletion flag.

REST sources are the simulated platforms on loopback, serving a small county whose rolls each test
edits; the SQL source is a small SQLite file written here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.connections import ConnectionConfigError, connection_json
from connectors.cursors import read_stamp
from connectors.registry import RegistryError, load_source_file
from hub import pipeline
from hub.simulation import CONNECTION_IDS
from simulators.county import SimulatedCounty
from simulators.population import CountySpec
from simulators.rest_server import serve_platform
from simulators.subsystems import SNAPSHOT_TIME

DAY0 = SNAPSHOT_TIME.strftime("%Y-%m-%dT%H:%M:%S")  # the latest update time of every simulated day-0 roll


@pytest.fixture(scope="module")
def small_county():
    return SimulatedCounty.create(CountySpec(persons=150, seed=5))


class _Platform:
    """One simulated platform serving the small county; ``serve`` swaps in an edited roll."""

    def __init__(self, server, county):
        self.server, self.county, self.kept = server, county, [county]

    def serve(self, name: str, roll: pd.DataFrame) -> None:
        county = dataclasses.replace(self.county, rolls={**self.county.rolls, name: roll})
        self.kept.append(county)  # the platform caches by object: keep every county alive
        self.server.state.county = county


@pytest.fixture
def platform(small_county, monkeypatch, clean_warehouse):
    started = []

    def start(which: str) -> _Platform:
        server = serve_platform(which, small_county)
        u = urlsplit(server.url)
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONNECTION_IDS[which].upper()}", connection_json(
            conn_type="http", host=u.hostname, port=u.port, schema="http", login=server.username,
            password=server.password))
        started.append(server)
        return _Platform(server, small_county)

    yield start
    for server in started:
        server.stop()


def _one(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def _quarantine(engine, source: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT reason_code, source_record_id, detail FROM raw.quarantine WHERE source = :s ORDER BY quarantine_id"),
            {"s": source})]


def _cursor(engine, source: str) -> str | None:
    return _one(engine, "SELECT cursor FROM raw.source_state WHERE source = :s", s=source)


def _raw_keys(engine, source: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT source_record_id FROM raw.record WHERE source = :s"),
                                {"s": source}).scalars())


def test_a_record_from_the_future_is_quarantined_and_later_runs_keep_receiving(platform, small_county,
                                                                             clean_warehouse):
    civil = platform("civil_affairs")
    roll = small_county.rolls["mz_dibao"].copy()
    roll.loc[0, "_updated"] = pd.Timestamp("2099-01-01")
    civil.serve("mz_dibao", roll)
    first = pipeline.ingest_source("mz_dibao")
    assert (first["received"], first["landed"], first["quarantined"]) == (len(roll), len(roll) - 1, 1)
    [(reason, key, detail)] = _quarantine(clean_warehouse, "mz_dibao")
    assert (reason, key) == ("cursor_in_future", roll.loc[0, "record_id"])
    assert "gxsj" in detail and "2099" in detail and "\n" not in detail
    assert roll.loc[0, "id_number"] not in detail and roll.loc[0, "name"] not in detail
    assert _cursor(clean_warehouse, "mz_dibao") == DAY0  # the cursor stayed with the good records

    # the next day a record changes: it is received and lands (the future one is quarantined again)
    day1 = roll.copy()
    day1.loc[1, ["address", "_updated"]] = ["城关镇新城社区1组1号", SNAPSHOT_TIME + dt.timedelta(days=1)]
    civil.serve("mz_dibao", day1)
    second = pipeline.ingest_source("mz_dibao")
    assert second["mode"] == "incremental" and second["landed"] == 1 and second["quarantined"] == 1, second
    assert _cursor(clean_warehouse, "mz_dibao") == (SNAPSHOT_TIME + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_time_within_the_clock_skew_lands_but_the_cursor_stops_at_the_extract_start(platform, small_county,
                                                                                    clean_warehouse):
    health = platform("health")
    roll = small_county.rolls["wj_yuling"].copy()
    ahead = dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None) + dt.timedelta(minutes=2)
    roll.loc[3, "_updated"] = pd.Timestamp(ahead)
    health.serve("wj_yuling", roll)
    before = dt.datetime.now(dt.UTC)
    result = pipeline.ingest_source("wj_yuling")
    assert result["landed"] == len(roll) and result["quarantined"] == 0
    cursor = read_stamp(_cursor(clean_warehouse, "wj_yuling"), zone="Asia/Shanghai")
    assert cursor is not None and before - dt.timedelta(seconds=5) <= cursor.at <= dt.datetime.now(dt.UTC)
    assert cursor.text != pd.Timestamp(ahead).strftime("%Y-%m-%dT%H:%M:%S")  # not the record's time


def test_a_poisoned_stored_cursor_is_replaced_by_a_complete_extract(platform, small_county, clean_warehouse):
    platform("civil_affairs")
    pipeline.ingest_source("mz_gaoling")
    with clean_warehouse.begin() as conn:  # as a run before this release could have left it
        conn.execute(sa.text("UPDATE raw.source_state SET cursor = '2099-01-01T00:00:00' WHERE source = 'mz_gaoling'"))
    result = pipeline.ingest_source("mz_gaoling")
    assert result["mode"] == "full" and "later than now" in result["mode_reason"], result
    assert _cursor(clean_warehouse, "mz_gaoling") == DAY0


def test_a_late_record_with_the_cursors_own_second_is_loaded(platform, small_county, clean_warehouse):
    civil = platform("civil_affairs")
    roll = small_county.rolls["mz_dibao"]
    first = pipeline.ingest_source("mz_dibao")
    assert first["landed"] == len(roll) and _cursor(clean_warehouse, "mz_dibao") == DAY0
    late = roll.iloc[[0]].assign(record_id="DB9000001", _updated=SNAPSHOT_TIME)  # committed after the extract
    civil.serve("mz_dibao", pd.concat([roll, late], ignore_index=True))
    second = pipeline.ingest_source("mz_dibao")
    assert "DB9000001" in _raw_keys(clean_warehouse, "mz_dibao")
    in_overlap = int((roll["_updated"] > SNAPSHOT_TIME - dt.timedelta(minutes=10)).sum())
    assert 1 <= in_overlap < len(roll)  # the roll's edits spread over its past; the latest is at the snapshot
    assert second["landed"] == 1 and second["duplicates"] == in_overlap, second  # the overlap: unchanged repeats
    assert second["mode"] == "incremental" and "less 10 minutes" in second["mode_reason"]


_SQL_COLUMNS = ("CSDJ_ID", "XSE_XM", "XSE_SFZH", "XB", "CSRQ", "LXDH", "JTZZ", "MQ_XM", "MQ_SFZH", "GXSJ", "SCBZ")


def _birth_row(n: int, updated: str) -> dict:
    return dict(zip(_SQL_COLUMNS, (f"CS{n:07d}", f"张{n}", None, "1", "2026-10-01", "13800000000", "城关镇",
                                   "李某", "341522199001011234", updated, "0")))


def _write_rows(url: str, rows: list[dict]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE TABLE IF NOT EXISTS "CSDJ" ({", ".join(f"{c} VARCHAR(200)" for c in _SQL_COLUMNS)},'
                             ' PRIMARY KEY ("CSDJ_ID"))'))
        conn.execute(sa.text(f'INSERT OR REPLACE INTO "CSDJ" VALUES ({", ".join(":" + c for c in _SQL_COLUMNS)})'),
                     rows)
    engine.dispose()


def test_sql_cursor_values_are_screened_and_the_same_second_is_read_again(tmp_path: Path, monkeypatch,
                                                                        clean_warehouse):
    db = tmp_path / "birth.db"
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_BIRTH", connection_json(conn_type="sqlite", host=str(db)))
    url = f"sqlite:///{db}"
    rows = [_birth_row(n, "2026-11-20 22:00:00") for n in range(1, 6)]
    rows += [_birth_row(6, "2099-01-01 00:00:00"), _birth_row(7, "2026-02-30 10:00:00"), _birth_row(8, "")]
    _write_rows(url, rows)
    first = pipeline.ingest_source("wj_chusheng")
    assert (first["received"], first["landed"], first["quarantined"]) == (8, 6, 2), first
    assert sorted(r[:2] for r in _quarantine(clean_warehouse, "wj_chusheng")) == [
        ("cursor_in_future", "CS0000006"), ("cursor_unparsable", "CS0000007")]
    assert _cursor(clean_warehouse, "wj_chusheng") == "2026-11-20 22:00:00"  # in the table's own format

    # committed late in the cursor's second, and one change the next morning
    _write_rows(url, [_birth_row(9, "2026-11-20 22:00:00"), _birth_row(2, "2026-11-21 08:00:00") | {"LXDH": "1"}])
    second = pipeline.ingest_source("wj_chusheng")
    assert second["mode"] == "incremental" and second["landed"] == 2, second
    assert {"CS0000009", "CS0000002"} <= _raw_keys(clean_warehouse, "wj_chusheng")
    assert _cursor(clean_warehouse, "wj_chusheng") == "2026-11-21 08:00:00"


def test_a_record_deleted_at_a_source_without_a_deletion_flag_goes_in_the_scheduled_full_extract(
        platform, small_county, clean_warehouse):
    social = platform("social_security")
    roll = small_county.rolls["rs_yanglao"].copy()
    gone = roll.loc[5, "record_id"]
    first = pipeline.ingest_source("rs_yanglao")
    assert first["mode"] == "full" and first["landed"] == len(roll)
    roll.loc[5, "_deleted"] = True  # rs_yanglao has no deletion flag: the record just stops being served
    social.serve("rs_yanglao", roll)

    daily = pipeline.ingest_source("rs_yanglao")  # within the week: incremental, the deletion unseen
    assert daily["mode"] == "incremental" and daily["tombstones"] == 0
    pipeline.standardize_sources(["rs_yanglao"])
    std = "SELECT count(*) FROM std.resident WHERE source = 'rs_yanglao' AND source_record_id = :k"
    assert _one(clean_warehouse, std, k=gone) == 1

    with clean_warehouse.begin() as conn:  # a week passes since the last complete extract
        conn.execute(sa.text("UPDATE raw.load_batch SET finished_at = finished_at - interval '8 days'"
                             " WHERE source = 'rs_yanglao' AND mode = 'full'"))
    weekly = pipeline.ingest_source("rs_yanglao")
    assert weekly["mode"] == "full" and "scheduled every 7 days" in weekly["mode_reason"], weekly
    assert weekly["tombstones"] == 1 and weekly["landed"] == 0 and weekly["duplicates"] == len(roll) - 1
    assert pipeline.ingest_source("rs_yanglao")["mode"] == "incremental"  # the schedule restarts
    pipeline.standardize_sources(["rs_yanglao"])
    assert _one(clean_warehouse, std, k=gone) == 0
    assert _one(clean_warehouse, "SELECT count(*) FROM std.resident WHERE source = 'rs_yanglao'") == len(roll) - 1


_BASE = ("name: wj_bad\ntitle: t\ndepartment: health\nconn_id: c\nresource: T\nprimary_key: id\n"
         "sharing_class: 有条件\nprogram: p\nfields: [id, xm, sfzh, gx, sc]\nmapping: {name: xm, id_number: sfzh}\n")


@pytest.mark.parametrize(("extra", "expected"), [
    ("kind: sql\nincremental: {field: gx}\n", ["field '(file)'", "full_extract_every_days"]),
    ("kind: file\nfull_extract_every_days: 7\n", ["needs an incremental cursor"]),
    ("kind: sql\nincremental: {field: gx}\nfull_extract_every_days: 0\n", ["field 'full_extract_every_days'"]),
    ("kind: sql\nincremental: {field: gx, timezone: Mars/Olympus}\ndeleted: {field: sc, value: '1'}\n",
     ["field 'incremental.timezone'", "Mars/Olympus"]),
    ("kind: sql\nincremental: {field: gx, format: '%H:%M'}\ndeleted: {field: sc, value: '1'}\n",
     ["field 'incremental.format'", "%Y"]),
])
def test_the_registry_asks_a_source_without_a_deletion_flag_for_a_full_extract_schedule(tmp_path, extra, expected):
    bad = tmp_path / "wj_bad.yaml"
    bad.write_text(_BASE + extra, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_source_file(bad)
    for part in ["wj_bad.yaml", *expected]:
        assert part in str(info.value), str(info.value)


@pytest.mark.parametrize(("text", "utc"), [
    ("2026-11-20T22:00:00", "2026-11-20 14:00"),  # the REST platforms
    ("2026-11-20 22:00:00.250", "2026-11-20 14:00"),  # a database column
    ("20261120220000", "2026-11-20 14:00"),
    ("2026/11/20 22:00", "2026-11-20 14:00"),
    ("2026-11-20T14:00:00Z", "2026-11-20 14:00"),
    ("2026-11-20T22:00:00+08:00", "2026-11-20 14:00"),
    ("2026-11-20", "2026-11-19 16:00"),
])
def test_update_times_are_read_and_written_back_in_the_sources_own_format(text, utc):
    stamp = read_stamp(text, zone="Asia/Shanghai")
    assert stamp is not None and f"{stamp.at:%Y-%m-%d %H:%M}" == utc
    assert stamp.write(stamp.at) == text or read_stamp(stamp.write(stamp.at), zone="Asia/Shanghai").at == stamp.at
    earlier = stamp.write(stamp.at - dt.timedelta(minutes=10))
    assert len(earlier) == len(stamp.write(stamp.at)) and earlier < stamp.write(stamp.at)


@pytest.mark.parametrize("text", ["2026-13-01T00:00:00", "2026-02-30", "昨天", "1700000000", "2026-11-20T25:00:00"])
def test_unreadable_update_times_are_not_read(text):
    assert read_stamp(text, zone="Asia/Shanghai") is None


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path, monkeypatch, clean_warehouse):
    missing = tmp_path / "birth_registration.db"
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_BIRTH", connection_json(conn_type="sqlite", host=str(missing)))
    with pytest.raises(ConnectionConfigError, match="the SQLite file .* does not exist"):
        pipeline.ingest_source("wj_chusheng")
    assert not missing.exists()
