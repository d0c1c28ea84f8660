"""A task process killed with SIGKILL under the real scheduler: Airflow retries it, and raw and the release
come out as a clean run's.

``hub airflow up`` runs the scheduler, dag-processor, triggerer and API server (LocalExecutor); the test
finds the task's own process by the PID Airflow records on the task instance and kills it mid-run:
``ingest_rs_yanglao`` while it extracts a slowed platform, ``master_index``'s publish while it waits to
switch the current release (on a table lock the test holds). One retry, one second later.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import sqlalchemy as sa

from hub import pipeline
from simulators.rest_server import FaultPlan
from tests.reliability.test_kill_recovery import clean_load, raw_state, reference_url  # noqa: F401
from warehouse.releases import PUBLISHED_COLUMNS

SOURCE = "rs_yanglao"


@pytest.fixture(scope="module")
def cluster(airflow_cluster):
    return airflow_cluster


def _until(condition, timeout: float, what: str, cluster=None):
    deadline = time.monotonic() + timeout
    while True:
        if cluster is not None:
            cluster.check_alive()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def _running_task(cluster, dag_id: str, task_id: str) -> tuple[str, dict] | None:
    """(run id, task instance) of ``task_id`` while it runs in its first try with a recorded PID."""
    for run in cluster.runs(dag_id):
        for ti in cluster.task_instances(dag_id, run["dag_run_id"]):
            if ti["task_id"] == task_id and ti["state"] == "running" and ti.get("pid") and ti["try_number"] == 1:
                return run["dag_run_id"], ti
    return None


def _kill_task_process(cluster, pid: int) -> None:
    """SIGKILL the task's process, after checking that it is one the deployment started."""
    family = {p.pid for p in cluster.processes()}
    assert pid in family, f"PID {pid} is not a process of the Airflow deployment"
    assert pid != cluster.proc.pid
    os.kill(pid, signal.SIGKILL)
    _until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30,
           "the task process to die")


def _tries(cluster, dag_id: str, run_id: str, task_id: str) -> dict:
    return next(ti for ti in cluster.task_instances(dag_id, run_id) if ti["task_id"] == task_id)


def test_ingestion_task_killed_mid_extract_is_retried_and_raw_equals_a_clean_load(
        cluster, platforms, clean_warehouse, reference_url, database_url):  # noqa: F811
    dag_id = f"ingest_{SOURCE}"
    faults = FaultPlan(slow=1.0, slow_seconds=1.0)  # every page answers after a second: five pages, five seconds
    platforms.set_faults(faults)
    try:
        cluster.start_runs([dag_id])
        run_id, ti = _until(lambda: _running_task(cluster, dag_id, "extract_and_land"), 180,
                            "the extract to start", cluster)
        _until(lambda: faults.counts.get("slow", 0) >= 3, 60, "two pages landed and the third asked for", cluster)
        with clean_warehouse.connect() as conn:  # mid-load: its batch is open, nothing committed
            assert conn.execute(sa.text("SELECT status FROM raw.load_batch WHERE source = :s"),
                                {"s": SOURCE}).scalars().all() == ["running"]
        _kill_task_process(cluster, ti["pid"])
    finally:
        platforms.set_faults(None)  # the retry finds the platform well
    run = cluster.wait_run(dag_id, run_id, timeout=240)
    cluster.pause([dag_id])
    assert run["state"] == "success", cluster.describe(dag_id, run_id)
    retried = _tries(cluster, dag_id, run_id, "extract_and_land")
    assert retried["state"] == "success" and retried["try_number"] == 2, retried
    cluster.wait_settled([dag_id], timeout=120)

    recovered = raw_state(database_url, SOURCE)
    clean = clean_load(reference_url, SOURCE)
    assert sum(clean["records"].values()) == 2207
    for part in ("records", "quarantine", "tombstones", "cursor", "files"):
        assert recovered[part] == clean[part], part
    assert recovered["loads"][0] == clean["loads"][0]  # the retried load counted what a clean one counts
    assert recovered["failed"] == [(0, "interrupted: the process stopped before the batch committed")]


def test_publish_task_killed_mid_way_is_retried_and_publishes_what_the_gate_validated(
        cluster, platforms, clean_warehouse):
    engine = clean_warehouse
    for name in pipeline.source_names():  # raw filled here; the DAG standardizes, matches, gates and publishes
        pipeline.ingest_source(name)
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(sa.text("LOCK TABLE publish.current_release IN SHARE MODE"))  # the switch waits on it
    try:
        cluster.clear_queued_asset_events()  # the load of the test before would start a second run
        run_id = cluster.trigger("master_index")
        cluster.unpause(["master_index"])
        found, ti = _until(lambda: _running_task(cluster, "master_index", "publish"), 300,
                           "the publish task to start", cluster)
        assert found == run_id

        def waiting_backend():
            with engine.connect() as conn:
                return conn.execute(sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    " AND query LIKE '%INSERT INTO publish.current_release%'")).scalar()
        backend = _until(waiting_backend, 120, "the publish to reach the switch", cluster)
        with engine.connect() as conn:  # it has written the release's people and enrolments, uncommitted
            written = set(conn.execute(sa.text(
                "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE l.pid = :p AND l.mode = 'RowExclusiveLock'"), {"p": backend}).scalars())
        assert {"release", "master_person", "enrolment"} <= written
        _kill_task_process(cluster, ti["pid"])
    finally:
        blocker.rollback()
        blocker.close()
    run = cluster.wait_run("master_index", run_id, timeout=300)
    cluster.pause(["master_index"])
    assert run["state"] == "success", cluster.describe("master_index", run_id)
    retried = _tries(cluster, "master_index", run_id, "publish")
    assert retried["state"] == "success" and retried["try_number"] == 2, retried
    cluster.wait_settled(["master_index"], timeout=240)

    with engine.connect() as conn:
        releases = conn.execute(sa.text(
            "SELECT r.release_no, r.content_hash, v.content_hash AS validated, r.ran_with -> 'publish' -> 'airflow'"
            " FROM publish.release r JOIN audit.validation_run v ON v.run_id = r.validation_run_id")).all()
        current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()
        masters = sorted(conn.execute(sa.text(
            "SELECT (to_jsonb(m) - 'release_no')::text FROM publish.master_person m WHERE release_no = :n"),
            {"n": current}).scalars())
        golden = sorted(conn.execute(sa.text(
            f"SELECT to_jsonb(p)::text FROM (SELECT {', '.join(PUBLISHED_COLUMNS)} FROM mpi.golden) p")).scalars())
        enrolments = conn.execute(sa.text("SELECT count(*) FROM publish.enrolment WHERE release_no = :n"),
                                  {"n": current}).scalar_one()
        crosswalk = conn.execute(sa.text("SELECT count(*) FROM mpi.crosswalk")).scalar_one()
    # one release, whole, current, and exactly what its gate run validated; made by the retry
    assert len(releases) == 1 and releases[0].release_no == current
    assert releases[0].content_hash == releases[0].validated
    assert masters == golden and enrolments == crosswalk
    airflow = releases[0][3]
    assert airflow["dag_id"] == "master_index" and airflow["run_id"] == run_id and airflow["try_number"] == "2"
