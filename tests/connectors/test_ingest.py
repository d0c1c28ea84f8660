"""Ingesting every simulated subsystem over its real protocol into a real PostgreSQL."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.base import ExtractError
from hub import pipeline
from hub.simulation import connection_env
from simulators.platforms import start_platforms
from simulators.rest_server import FaultPlan
from simulators.subsystems import SNAPSHOT_TIME, SUBSYSTEMS
from warehouse.landing import content_hash

SOURCES = sorted(SUBSYSTEMS)


@pytest.fixture
def live(county, tmp_path, monkeypatch, clean_warehouse):
    """A fresh copy of every platform for one test, its connections in the environment."""
    running = start_platforms(county, tmp_path / "sim")
    for key, value in connection_env(running).items():
        monkeypatch.setenv(key, value)
    yield running
    running.stop()


def _raw(engine, source):
    with engine.connect() as conn:
        return pd.read_sql(sa.text("SELECT source_record_id, content_hash FROM raw.record WHERE source = :s"),
                           conn, params={"s": source})


def _expected_live(county, name) -> pd.DataFrame:
    """What a complete extract of ``name`` must land: the records the subsystem serves today."""
    sub = SUBSYSTEMS[name]
    hard_delete = sub.protocol in ("csv", "xlsx") or "_deleted" not in sub.fields
    return county.served(name, include_deleted=not hard_delete)


def test_every_subsystem_lands_and_reconciles_with_the_truth(live, county, clean_warehouse):
    truth = county.truth()
    for name in SOURCES:
        result = pipeline.ingest_source(name)
        expected = _expected_live(county, name)
        key = SUBSYSTEMS[name].fields["record_id"]
        assert result["received"] == result["landed"] + result["quarantined"] + result["duplicates"]
        assert result["landed"] == len(expected), name
        assert result["quarantined"] == 0 and result["schema_drift"] is None, name
        raw = _raw(clean_warehouse, name)
        assert set(raw["source_record_id"]) == set(expected[key].astype(str)), name
        # every landed record is a record of a real person in the ground truth
        assert set(raw["source_record_id"]) <= set(truth.loc[truth["source"] == name, "source_record_id"]), name
    with clean_warehouse.connect() as conn:
        batches = conn.execute(sa.text("SELECT status, count(*) FROM raw.load_batch GROUP BY status")).all()
    assert batches == [("succeeded", len(SOURCES))]


def test_second_run_lands_only_what_changed(live, county, clean_warehouse):
    for name in SOURCES:
        pipeline.ingest_source(name)
    day1 = county.next_day()
    live.advance(day1)
    for name in SOURCES:
        sub = SUBSYSTEMS[name]
        before, after = _expected_live(county, name), _expected_live(day1, name)
        key = sub.fields["record_id"]
        result = pipeline.ingest_source(name)
        merged = after.merge(before, on=key, how="left", suffixes=("", "_old"), indicator=True)
        cols = [c for c in after.columns if c != key]
        changed = (merged["_merge"] == "left_only") | (merged[cols].fillna("").astype(str).values
                                                         != merged[[c + "_old" for c in cols]].fillna("").astype(str)
                                                         .values).any(axis=1)
        assert result["landed"] == int(changed.sum()), (name, result)
        if sub.protocol == "rest" or sub.protocol == "sql":
            assert result["mode"] == "incremental"
            # only changed records were sent, and the unchanged ones in the overlap window before the cursor
            field = pipeline.get_source(name).incremental.field
            overlap = (SNAPSHOT_TIME - pd.Timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
            repeats = int((merged.loc[~changed, field].astype(str) >= overlap).sum())
            assert (result["received"], result["duplicates"]) == (int(changed.sum()) + repeats, repeats), (name, result)
        gone = set(before[key].astype(str)) - set(after[key].astype(str))
        flagged = day1.rolls[name]["_deleted"] & ~county.rolls[name]["_deleted"].reindex(day1.rolls[name].index,
                                                                                          fill_value=False)
        if sub.protocol in ("csv", "xlsx"):
            assert result["tombstones"] == len(gone), name
        elif "_deleted" in sub.fields:
            assert result["tombstones"] == int(flagged.sum()), name
    # the std view of raw no longer holds deleted records
    with clean_warehouse.connect() as conn:
        deleted = conn.execute(sa.text("SELECT count(*) FROM raw.current_record WHERE deleted")).scalar_one()
    assert deleted >= day1.changes["deletions"] - sum(
        int(day1.rolls[n]["_deleted"].sum()) for n in SOURCES if "_deleted" not in SUBSYSTEMS[n].fields
        and SUBSYSTEMS[n].protocol == "rest")


def test_files_are_never_ingested_twice_and_are_moved_aside(live, clean_warehouse):
    first = pipeline.ingest_source("wj_liudong")
    folder = live.drops / "wj_liudong"
    assert not list(folder.glob("*.csv")) and len(list((folder / "processed").glob("*.csv"))) == 1
    [done] = (folder / "processed").glob("*.csv")
    shutil.copy(done, folder / "LDRK_copy.csv")  # the same content under another name
    again = pipeline.ingest_source("wj_liudong")
    assert first["landed"] > 0 and again["received"] == 0
    assert not (folder / "LDRK_copy.csv").exists()


def test_bad_rows_are_quarantined_and_schema_drift_reported(live, clean_warehouse):
    folder = live.drops / "wj_liudong"
    for f in folder.glob("*.csv"):
        f.unlink()
    text = ("编号,姓名,公民身份号码,性别,出生日期,手机号码,现居住地址,户籍地区划,登记日期,民族\n"
            "LD1,张三,34152219800101001X,男,1980年1月1日,13800000000,城关镇,341522,2024-01-01,汉族\n"
            "LD2,李四,341522198001010029,女,1980年1月1日,13800000001,城关镇,341522,2024-01-01,汉族,多出来的\n"
            ",王五,341522198001010037,男,1980年1月1日,13800000002,城关镇,341522,2024-01-01,汉族\n")
    (folder / "LDRK_20261130.csv").write_bytes(text.encode("gbk"))
    result = pipeline.ingest_source("wj_liudong")
    assert (result["received"], result["landed"], result["quarantined"]) == (3, 1, 2)
    assert result["schema_drift"] == {"added": ["手机号码", "民族"], "removed": ["联系电话"]}
    with clean_warehouse.connect() as conn:
        reasons = conn.execute(sa.text("SELECT reason_code FROM raw.quarantine ORDER BY quarantine_id")).scalars().all()
        drift = conn.execute(sa.text("SELECT schema_drift FROM raw.load_batch")).scalar_one()
    assert reasons == ["missing_primary_key", "bad_row_shape"] or sorted(reasons) == ["bad_row_shape",
                                                                                    "missing_primary_key"]
    assert drift["added"] == ["手机号码", "民族"]


@pytest.mark.parametrize("name", ["mz_dibao", "wj_yuling", "rs_yanglao"])
def test_faults_end_with_exactly_the_fault_free_content(live, county, clean_warehouse, monkeypatch, name):
    monkeypatch.setenv("HUB_HTTP_TIMEOUT", "1")
    # a repeated or skipped page spoils the whole extract (it is run again); the rest is retried per request
    live.set_faults(FaultPlan(rate_limit=0.05, server_error=0.05, timeout=0.02, truncated=0.04, html=0.04,
                              duplicate_page=0.01, skip_page=0.01, timeout_seconds=1.5, seed=len(name)))
    source = pipeline.get_source(name)
    # about a dozen pages: many chances to fail
    monkeypatch.setattr(source.pagination, "page_size", max(10, len(county.served(name)) // 12))
    failures = 0
    for _ in range(40):
        try:
            pipeline.ingest_source(name, full=True)
            break
        except ExtractError:
            failures += 1
    else:
        pytest.fail(f"{name}: no clean extract in 40 tries")
    served = county.served(name).to_dict(orient="records")
    key = SUBSYSTEMS[name].fields["record_id"]
    expected = {(str(r[key]), content_hash(r)) for r in served}
    raw = _raw(clean_warehouse, name)
    assert len(raw) == len(expected)  # nothing doubled
    assert set(zip(raw["source_record_id"], raw["content_hash"])) == expected  # nothing lost or changed
    counts = live.rest[SUBSYSTEMS[name].platform].state.faults.counts
    assert sum(counts.values()) > 0


def test_a_load_killed_between_pages_leaves_nothing_half_done(live, county, clean_warehouse):
    live.set_faults(FaultPlan(slow=1.0, slow_seconds=0.4))
    env = {**os.environ, "HUB_DATABASE_URL": os.environ["HUB_DATABASE_URL"]}
    hub = str(Path(sys.executable).with_name("hub"))
    proc = subprocess.Popen([hub, "ingest", "rs_yanglao"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    with clean_warehouse.connect() as conn:
        while time.monotonic() < deadline:  # wait until the load has begun
            if conn.execute(sa.text("SELECT count(*) FROM raw.load_batch")).scalar_one():
                break
            time.sleep(0.2)
    time.sleep(1.5)  # a few pages in
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _raw(clean_warehouse, "rs_yanglao").empty  # the killed batch committed nothing
    live.set_faults(None)
    result = pipeline.ingest_source("rs_yanglao")
    assert result["landed"] == len(county.served("rs_yanglao"))
    with clean_warehouse.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status, error FROM raw.load_batch ORDER BY batch_id")).all()
    assert statuses[0][0] == "failed" and statuses[0][1].startswith("interrupted")
    assert statuses[-1][0] == "succeeded"
