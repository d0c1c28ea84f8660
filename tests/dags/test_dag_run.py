"""The real DAGs, run with ``dag.test()`` against the real warehouse and the simulated platform."""

import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub import settings

ID_SHAPE = re.compile(rb"[0-9]{17}[0-9Xx]")


def _full_ids_in(roots: list[Path], known: set[str]) -> list[str]:
    """Files under ``roots`` holding any of the ``known`` full ID numbers (as 'file: masked number')."""
    hits = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            found = {m.decode().upper() for m in ID_SHAPE.findall(path.read_bytes())} & known
            hits += [f"{path}: {n[:6]}********{n[-4:]}" for n in sorted(found)]
    return hits


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag


def _state(run) -> str:
    return str(getattr(run.state, "value", run.state))


def _scorecard() -> Path:
    (page,) = [p for p in settings.gx_dir().rglob("scorecard.html")]
    return page


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
    # the report task: the scorecards beside the Data Docs, the audit report and the findings workbooks
    scorecard = _scorecard()
    assert "published" in scorecard.read_text(encoding="utf-8")
    assert {p.name for p in scorecard.parent.glob("scorecard_*.html")} >= {"scorecard_civil_affairs.html"}
    audit = settings.hub_home() / "audit"
    assert any(audit.glob("*.html")) and any(audit.glob("findings_*.xlsx"))


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
    # the report task ran after the failed gate: the scorecard shows the blocked attempt and the failing suite
    text = _scorecard().read_text(encoding="utf-8")
    assert "<b>blocked</b>" in text and "failing expectations" in text


def test_no_full_id_number_in_generated_files_logs_or_xcom(clean_warehouse, platforms, county, dagbag, capfd, caplog):
    """Runs both DAGs (one good release, one blocked gate), then scans everything the hub and Airflow wrote:
    Great Expectations results and Data Docs, the scorecard, Airflow's metadata database (XCom) and task
    logs, and what was logged or printed."""
    from warehouse.landing import land_records, open_batch

    known = set(county.population["id_number"].dropna().str.upper()) | {"11010519491231002X"}
    assert _state(dagbag.dags["ingest_mz_dibao"].test()) == "success"
    assert _state(dagbag.dags["master_index"].test()) == "success"
    bad = [{"id": f"PII{i:03d}", "xm": "王晓", "sfzh": "11010519491231002X"} for i in range(25)]
    with clean_warehouse.begin() as conn:
        land_records(conn, source="mz_dibao", batch_id=open_batch(conn, "mz_dibao"), records=bad, primary_key="id",
                     fetched_at=dt.datetime.now(dt.UTC))
    assert _state(dagbag.dags["master_index"].test()) == "failed"

    with clean_warehouse.connect() as conn:  # the warehouse does hold them: the scan looks for the right thing
        stored = set(conn.execute(sa.text("SELECT id_number FROM std.resident WHERE id_number IS NOT NULL")).scalars())
    assert stored & known
    generated = [settings.gx_dir(), Path(settings.airflow_env()["AIRFLOW_HOME"])]
    assert any(p.name == "index.html" for p in settings.gx_dir().rglob("*.html"))
    assert any(p.name == "scorecard.html" for p in settings.gx_dir().rglob("*.html"))
    assert _full_ids_in(generated, known) == []
    out, errors = capfd.readouterr()
    printed = {m.decode().upper() for m in ID_SHAPE.findall((out + errors + caplog.text).encode())}
    assert printed & known == set()
