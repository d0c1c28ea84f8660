"""The demo: a simulated civil-affairs platform on loopback, run through the real DAGs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hub import airflow_runner, settings
from hub.pipeline import prepare_warehouse, source_names
from warehouse.audit import last_gate_run
from warehouse.figures import master_count, records_per_source
from warehouse.releases import last_publish_attempt


@dataclass
class DemoSummary:
    records_per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    master_persons: int = 0
    expectations_passed: int = 0
    expectations_failed: int = 0
    release_no: int | None = None
    release_outcome: str = ""
    validation_report: str = ""


def run_demo(persons: int = 5000, seed: int = 20261121, echo=print) -> DemoSummary:
    """Serve the simulated platform, run every ingestion DAG and the master-index DAG, and summarize."""
    from hub.simulation import connection_env, start_simulation

    url = settings.database_url()
    where = "HUB_DATABASE_URL"
    if not os.environ.get("HUB_DATABASE_URL"):
        where = f"embedded PostgreSQL under {settings.hub_home() / 'pg'}"
    echo(f"warehouse: {where}")
    prepare_warehouse()
    platforms = start_simulation(persons=persons, seed=seed, workdir=settings.hub_home() / "sim")
    echo(f"simulated county of {persons} persons: {len(platforms.where())} departmental subsystems served on loopback")
    extra = {
        "HUB_DATABASE_URL": url,
        **connection_env(platforms),
        "HUB_DAG_RETRIES": os.environ.get("HUB_DAG_RETRIES", "0"),
    }
    try:
        airflow_runner.ensure_metadata_db(extra)
        for name in source_names():
            echo(f"running DAG ingest_{name} …")
            airflow_runner.test_dag(f"ingest_{name}", extra)
        echo("running DAG master_index …")
        airflow_runner.test_dag("master_index", extra)
    finally:
        platforms.stop()
    return summarize()


def summarize() -> DemoSummary:
    """What the warehouse holds now: records per source, masters, the last gate and release."""
    s = DemoSummary()
    with settings.engine().connect() as conn:
        s.records_per_source = records_per_source(conn, source_names())
        s.master_persons = master_count(conn)
        run = last_gate_run(conn)
        if run:
            s.expectations_passed, s.expectations_failed, s.validation_report = (
                run["successful"], run["failed"], run["docs_path"])
        attempt = last_publish_attempt(conn)
        if attempt:
            s.release_outcome, s.release_no = attempt["outcome"], attempt["release_no"]
    return s
