"""A process killed with SIGKILL in the middle of a load or a publish leaves nothing half done.

``hub ingest`` is killed while it extracts a slowed REST platform, then run again: raw (records, quarantine,
tombstones, cursor) equals what one uninterrupted load writes into a second, clean warehouse. A publish is
killed after it wrote the release's rows and before it switched the current release (held there by a table
lock the test takes), then run again: the current release stays whole meanwhile, and the rerun publishes
exactly the content its gate run validated. Real processes, real PostgreSQL, real loopback servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hub import pipeline
from simulators.rest_server import FaultPlan
from tests.helpers import empty_warehouse, publish_day0
from warehouse.releases import PUBLISHED_COLUMNS

SOURCE = "rs_yanglao"  # REST with a cursor, five pages of 500 records in the session's county
HUB = str(Path(sys.executable).with_name("hub"))


def raw_state(url: str, source: str) -> dict:
    """What raw holds of ``source``, without batch ids and times: records, quarantine, tombstones, the cursor,
    the files taken, and the counts of the loads that succeeded."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            def rows(sql: str) -> Counter:
                return Counter(tuple(r) for r in conn.execute(sa.text(sql), {"s": source}))
            state = {
                "records": rows("SELECT source_record_id, content_hash, payload::text FROM raw.record WHERE source = :s"),
                "quarantine": rows("SELECT source_record_id, reason_code, payload FROM raw.quarantine"
                                   " WHERE source = :s"),
                "tombstones": rows("SELECT source_record_id, reason, revoked_in IS NULL FROM raw.tombstone"
                                   " WHERE source = :s"),
                "cursor": conn.execute(sa.text("SELECT cursor FROM raw.source_state WHERE source = :s"),
                                       {"s": source}).scalar(),
                "files": rows("SELECT content_hash, file_name, records FROM raw.ingested_file WHERE source = :s"),
                "loads": [tuple(r) for r in conn.execute(sa.text(
                    "SELECT status, mode, received, landed, quarantined, duplicates, tombstones FROM raw.load_batch"
                    " WHERE source = :s AND status = 'succeeded' ORDER BY batch_id"), {"s": source})],
                "failed": [tuple(r) for r in conn.execute(sa.text(
                    "SELECT landed, error FROM raw.load_batch WHERE source = :s AND status = 'failed'"
                    " ORDER BY batch_id"), {"s": source})],
            }
    finally:
        engine.dispose()
    return state


@pytest.fixture(scope="module")
def reference_url(server_admin_url, database_url):
    """A second, empty warehouse on the same server for the clean runs to compare with."""
    from warehouse.embedded import ensure_database
    from warehouse.migrate import upgrade

    name = f"hub_ref_{uuid.uuid4().hex[:10]}"
    ensure_database(server_admin_url, name)
    url = make_url(server_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def clean_load(reference_url: str, source: str) -> dict:
    """One uninterrupted ``hub ingest`` of ``source`` into the reference warehouse; returns its raw state."""
    done = subprocess.run([HUB, "ingest", source], env={**os.environ, "HUB_DATABASE_URL": reference_url},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return raw_state(reference_url, source)


def _until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _backend_gone(engine, pid: int) -> bool:
    with engine.connect() as conn:
        return not conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()


def test_ingest_killed_mid_extract_then_rerun_lands_what_an_uninterrupted_load_lands(
        clean_warehouse, platforms, reference_url, database_url):
    faults = FaultPlan(slow=1.0, slow_seconds=0.7)  # every page answers after 0.7 s
    platforms.set_faults(faults)
    proc = subprocess.Popen([HUB, "ingest", SOURCE], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        # two pages served and landed in the load's transaction, the third asked for: kill it there
        _until(lambda: faults.counts.get("slow", 0) >= 3 or proc.poll() is not None, 60, "the third page")
        assert proc.poll() is None, proc.communicate()
        with clean_warehouse.connect() as conn:  # the load is under way: its batch is open, nothing landed yet
            assert conn.execute(sa.text("SELECT status FROM raw.load_batch WHERE source = :s"),
                                {"s": SOURCE}).scalars().all() == ["running"]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        platforms.set_faults(None)
    killed = raw_state(database_url, SOURCE)
    assert not killed["records"] and killed["cursor"] is None and not killed["loads"]

    rerun = subprocess.run([HUB, "ingest", SOURCE], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    recovered = raw_state(database_url, SOURCE)
    clean = clean_load(reference_url, SOURCE)
    assert sum(clean["records"].values()) == 2207
    for part in ("records", "quarantine", "tombstones", "cursor", "files", "loads"):
        assert recovered[part] == clean[part], part
    # the killed load is recorded as interrupted, with nothing landed
    assert recovered["failed"] == [(0, "interrupted: the process stopped before the batch committed")]


PUBLISH = ("import json, sys\nfrom hub.pipeline import publish_release\n"
           "print(json.dumps(publish_release(int(sys.argv[1]))))")


def _release_state(conn, release_no: int) -> dict:
    return {
        "release": conn.execute(sa.text("SELECT content_hash, master_count, record_count, validation_run_id"
                                        " FROM publish.release WHERE release_no = :n"), {"n": release_no}).one(),
        "masters": Counter(tuple(r) for r in conn.execute(sa.text(
            "SELECT (to_jsonb(m) - 'release_no')::text FROM publish.master_person m WHERE release_no = :n"), {"n": release_no})),
        "enrolments": conn.execute(sa.text("SELECT count(*) FROM publish.enrolment WHERE release_no = :n"),
                                   {"n": release_no}).scalar_one(),
    }


def test_publish_killed_before_the_switch_leaves_the_current_release_and_the_rerun_publishes_what_was_validated(
        clean_warehouse, platforms, _served_platforms, county):
    engine = clean_warehouse
    first = publish_day0(engine, platforms, county)
    assert first["outcome"] == "published"
    with engine.connect() as conn:
        before = _release_state(conn, first["release_no"])
    try:
        platforms.advance(county.next_day())
        for name in pipeline.source_names():
            pipeline.ingest_source(name)
        pipeline.standardize_sources()
        pipeline.build_master_index()
        gate = pipeline.run_gate()
    finally:
        _served_platforms.advance(county)
    with engine.connect() as conn:
        validated = conn.execute(sa.text("SELECT content_hash FROM audit.validation_run WHERE run_id = :r"),
                                 {"r": gate["validation_run_id"]}).scalar_one()
    assert validated != before["release"].content_hash  # day 1 is new content

    # the switch of the current release waits on a lock the test holds; the publish is killed there
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(sa.text("LOCK TABLE publish.current_release IN SHARE MODE"))
    proc = subprocess.Popen([sys.executable, "-c", PUBLISH, str(gate["validation_run_id"])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[2]))
    try:
        def waiting_backend():
            with engine.connect() as conn:
                return conn.execute(sa.text(
                    "SELECT a.pid FROM pg_stat_activity a WHERE a.datname = current_database()"
                    " AND a.wait_event_type = 'Lock' AND a.query LIKE '%INSERT INTO publish.current_release%'")).scalar()
        backend = _until(lambda: waiting_backend() or proc.poll() is not None, 120, "the publish to reach the switch")
        assert proc.poll() is None, proc.communicate()
        with engine.connect() as conn:  # mid-way: it has written the release's people and enrolments
            written = set(conn.execute(sa.text(
                "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE l.pid = :p AND l.mode = 'RowExclusiveLock'"), {"p": backend}).scalars())
        assert {"release", "master_person", "enrolment"} <= written
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        blocker.rollback()
        blocker.close()
    _until(lambda: _backend_gone(engine, backend), 60, "the killed publish's session to end")

    with engine.connect() as conn:  # nothing of the killed publish is left; release 1 is current and whole
        assert conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM publish.master_person WHERE release_no <> 1")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM publish.enrolment WHERE release_no <> 1")).scalar_one() == 0
        assert _release_state(conn, 1) == before
        assert conn.execute(sa.text("SELECT count(*) FROM audit.publish_attempt WHERE validation_run_id = :r"),
                            {"r": gate["validation_run_id"]}).scalar_one() == 0

    rerun = subprocess.run([sys.executable, "-c", PUBLISH, str(gate["validation_run_id"])], capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    outcome = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert outcome["outcome"] == "published" and outcome["release_no"] == 2
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one() == 2
        after = _release_state(conn, 2)
        golden = Counter(tuple(r) for r in conn.execute(sa.text(
            f"SELECT to_jsonb(p)::text FROM (SELECT {', '.join(PUBLISHED_COLUMNS)} FROM mpi.golden) p")))
        crosswalk = conn.execute(sa.text("SELECT count(*) FROM mpi.crosswalk")).scalar_one()
    # exactly what the gate validated: its digest, every golden record, every enrolment
    assert after["release"].content_hash == validated and after["release"].validation_run_id == gate["validation_run_id"]
    assert after["masters"] == golden and after["enrolments"] == crosswalk
    # killed after its commit, before it could report: the retry reports the same release, publishes nothing new
    retry = pipeline.publish_release(gate["validation_run_id"])
    assert (retry["outcome"], retry["release_no"]) == ("published", 2)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one() == 2
        assert _release_state(conn, 2) == after


def teardown_module(module):
    from hub import settings

    empty_warehouse(settings.engine())
