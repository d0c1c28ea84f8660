"""The real DAGs, run with ``dag.test()`` against the real warehouse and the simulated platform."""

import datetime as dt

import pytest
import sqlalchemy as sa

from hub import settings


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag


def _state(run) -> str:
    return str(getattr(run.state, "value", run.state))


def test_ingestion_and_master_index_dags_publish_a_release(clean_warehouse, platforms, county, dagbag):
    for name in ("mz_dibao", "mz_gaoling"):
        assert _state(dagbag.dags[f"ingest_{name}"].test()) == "success"
    assert _state(dagbag.dags["master_index"].test()) == "success"
    with clean_warehouse.connect() as conn:
        raw = conn.execute(sa.text("SELECT count(*) FROM raw.record")).scalar_one()
        release = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()
        masters = conn.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one()
    assert raw == sum(len(county.served(name)) for name in ("mz_dibao", "mz_gaoling"))
    assert release == 1 and masters > 0


def test_failed_gate_fails_the_run_and_keeps_the_release(clean_warehouse, platforms, dagbag):
    from warehouse.landing import land_records, open_batch

    assert _state(dagbag.dags["ingest_mz_dibao"].test()) == "success"
    assert _state(dagbag.dags["master_index"].test()) == "success"
    # a faulty feed: 25 different records all carrying one valid ID number
    bad = [{"id": f"BAD{i:03d}", "xm": "王晓", "sfzh": "11010519491231002X"} for i in range(25)]
    with clean_warehouse.begin() as conn:
        land_records(conn, source="mz_dibao", batch_id=open_batch(conn, "mz_dibao"), records=bad, primary_key="id",
                     fetched_at=dt.datetime.now(dt.UTC))
    assert _state(dagbag.dags["master_index"].test()) == "failed"
    with clean_warehouse.connect() as conn:
        current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()
        attempt = conn.execute(sa.text(
            "SELECT outcome, release_no, reason FROM audit.publish_attempt ORDER BY attempt_id DESC LIMIT 1")).one()
    assert current == 1
    assert attempt.outcome == "blocked" and attempt.release_no == 1
    assert "record_count" in attempt.reason and "11010519491231002X" not in attempt.reason
