"""The DAGs under a real Airflow: scheduler, dag-processor, triggerer and API server started by
``hub airflow up`` (LocalExecutor, PostgreSQL metadata), the simulated platforms on loopback.

The tests run in order on one deployment: the first publishes a release, the second finds nothing new,
the third makes the gate fail against it.
"""

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from hub import settings
from hub.dag_config import PUBLISHED_ASSET_URI, raw_asset_uri


@pytest.fixture(scope="module")
def cluster(airflow_cluster):
    return airflow_cluster


def _since(events: list[dict], start: dt.datetime) -> list[dict]:
    return [e for e in events if dt.datetime.fromisoformat(e["timestamp"]) >= start]


def _ingest_during_a_dag_load(engine, timeout: float = 300) -> tuple[str, str]:
    """Once an ingestion DAG's task is loading a source (its batch is running), load that source as
    'hub ingest' does; returns the source and why the load was refused. A load that found the DAG's load
    ended already ran after it (the test checks that no two loads overlapped) and the next one is tried."""
    from hub.errors import HubError
    from hub.pipeline import ingest_source

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            source = conn.execute(sa.text(
                "SELECT source FROM raw.load_batch WHERE status = 'running' ORDER BY batch_id DESC LIMIT 1")).scalar()
        if source:
            try:
                ingest_source(source)
            except HubError as exc:
                return source, str(exc)
        time.sleep(0.05)
    pytest.fail(f"no load of an ingestion DAG was seen running within {timeout:g} s")


def _at(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def _new_runs(c, dag_id: str, before: set[str]) -> list[dict]:
    return [r for r in c.runs(dag_id) if r["dag_run_id"] not in before]


def test_ingestion_dags_start_the_master_index_which_publishes(cluster, platforms, clean_warehouse):
    c = cluster
    ingest = [d for d in c.dag_ids if d.startswith("ingest_")]
    assert len(ingest) == 8
    c.clear_queued_asset_events()  # what earlier tests left queued
    before = {d: {r["dag_run_id"] for r in c.runs(d)} for d in c.dag_ids}
    start = dt.datetime.now(dt.UTC)

    # unpausing starts the run of the last daily interval of each ingestion DAG at once: the eight run together
    c.start_runs(ingest)
    c.unpause()
    source, refused = _ingest_during_a_dag_load(clean_warehouse)  # what 'hub ingest SOURCE' runs
    assert refused == f"{source}: another load of this source is running"
    c.wait_settled(timeout=600)

    states = {k: s for k, s in c.all_task_states().items() if k[1] not in before[k[0]]}
    assert [k for k, s in states.items() if s not in ("success", "skipped")] == [], states
    for d in ingest:
        (run,) = _new_runs(c, d, before[d])
        assert run["state"] == "success" and run["run_type"] in ("scheduled", "manual"), c.describe(d, run["dag_run_id"])

    # the eight ran side by side: from the first start to the last end took less than their runs one after another
    loads = [_new_runs(c, d, before[d])[0] for d in ingest]
    spans = [(_at(r["start_date"]), _at(r["end_date"])) for r in loads]
    phase = (max(e for _, e in spans) - min(b for b, _ in spans)).total_seconds()
    one_after_another = sum((e - b).total_seconds() for b, e in spans)
    # the Asset schedule started master_index once, after the last load; it succeeded; its publish published
    runs = _new_runs(c, "master_index", before["master_index"])
    print(f"\ningestion phase: {phase:.0f} s from the first start to the last end ({one_after_another:.0f} s of runs);"
          f" master_index: {len(runs)} run(s), ended {max(_at(r['end_date']) for r in runs) - min(b for b, _ in spans)}"
          " after the first load started")
    assert phase < one_after_another, spans
    assert len(runs) == 1, runs
    assert runs and all(r["state"] == "success" for r in runs), runs
    assert {r["run_type"] for r in runs} == {"asset_triggered"}
    publish = {r["dag_run_id"]: states[("master_index", r["dag_run_id"], "publish")] for r in runs}
    published = [run_id for run_id, s in publish.items() if s == "success"]
    # a run that started after every load had landed finds nothing new: its publish is skipped
    assert set(publish.values()) <= {"success", "skipped"}, publish
    # exactly the expected Asset events: one per successful load, one per published release, none for a skip
    ingest_successes = sum(1 for (d, _, t), s in states.items() if d.startswith("ingest_") and s == "success")
    raw_events = [e for e in _since(c.asset_events(), start) if e["uri"].startswith(raw_asset_uri(""))]
    assert len(raw_events) == ingest_successes
    assert {e["uri"] for e in raw_events} == {raw_asset_uri(d.removeprefix("ingest_")) for d in ingest}
    published_events = _since(c.asset_events(PUBLISHED_ASSET_URI), start)
    assert sorted(e["source_run_id"] for e in published_events) == sorted(published)

    with clean_warehouse.connect() as conn:
        releases = conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one()
        current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()
        loaded = dict(conn.execute(sa.text(
            "SELECT source, count(*) FROM raw.load_batch WHERE status = 'succeeded' GROUP BY source")).all())
        overlapping = conn.execute(sa.text(
            "SELECT a.source, a.batch_id, b.batch_id FROM raw.load_batch a JOIN raw.load_batch b"
            " ON a.source = b.source AND a.batch_id < b.batch_id AND b.started_at < a.finished_at")).all()
    assert releases == current == len(published)
    # the report task wrote the deployment's statistical report kind (HUB_REPORTS) for the county and
    # every community of the current release, listed in the folder's index
    folder = settings.hub_home() / "reports" / str(current)
    forms = sorted(folder.glob("*.xlsx"))
    assert len(forms) > 1 and all("人口金字塔" in p.name for p in forms), forms
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert all(p.name in index for p in forms)
    assert set(loaded) == {d.removeprefix("ingest_") for d in ingest}
    assert overlapping == [], "two loads of one source ran side by side"


def test_nothing_new_skips_the_publish_without_an_asset_event(cluster, engine):
    """Runs after the test above: the index equals the current release."""
    c = cluster
    with engine.connect() as conn:
        current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()
    start = dt.datetime.now(dt.UTC)
    run_id = c.trigger("master_index")
    run = c.wait_run("master_index", run_id, timeout=400)

    assert run["state"] == "success", c.describe("master_index", run_id)
    assert c.task_states("master_index", run_id) == {
        "standardize": "success", "match": "success", "gate": "success", "publish": "skipped", "audit": "skipped",
        "report": "success"}
    assert "nothing new to publish" in c.task_log("master_index", run_id, "publish")
    # Airflow 3.3 emits no Asset event for a skipped outlet task
    assert _since(c.asset_events(PUBLISHED_ASSET_URI), start) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one() == current
    assert "nothing new to publish" in _note(c, run_id)


def _note(c, run_id: str, timeout: float = 30) -> str:
    """The run's note, which 'hub airflow' writes shortly after the run finished."""
    deadline = time.monotonic() + timeout
    while not (note := c.run("master_index", run_id).get("note")) and time.monotonic() < deadline:
        time.sleep(2)
    return note or ""


def test_failed_gate_fails_the_run_without_an_asset_event(cluster, platforms, engine):
    """Runs after the test above (a release is current): a faulty feed blocks the next release."""
    from warehouse.landing import land_records, open_batch

    c = cluster
    with engine.connect() as conn:
        current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()
    # a faulty feed: 25 different records all carrying one valid ID number (the gate's record_count check)
    bad = [{"id": f"BAD{i:03d}", "xm": "王晓", "sfzh": "11010519491231002X"} for i in range(25)]
    with engine.begin() as conn:
        land_records(conn, source="mz_dibao", batch_id=open_batch(conn, "mz_dibao"), records=bad, primary_key="id",
                     fetched_at=dt.datetime.now(dt.UTC))
    start = dt.datetime.now(dt.UTC)
    run_id = c.trigger("master_index")
    run = c.wait_run("master_index", run_id, timeout=400)

    assert run["state"] == "failed", c.describe("master_index", run_id)
    assert c.task_states("master_index", run_id) == {
        "standardize": "success", "match": "success", "gate": "failed", "publish": "upstream_failed",
        "audit": "upstream_failed", "report": "success"}
    tries = {ti["task_id"]: ti["try_number"] for ti in c.task_instances("master_index", run_id)}
    assert tries["gate"] == 1, "a blocked gate is not retried"
    log = c.task_log("master_index", run_id, "gate")
    reason = next(line for line in reversed(log.splitlines()) if "blocked by the publish gate" in line)
    assert "record_count" in reason and "11010519491231002X" not in log
    assert _since(c.asset_events(PUBLISHED_ASSET_URI), start) == []
    c.wait_settled(["master_index"], timeout=60)
    later = [r["dag_run_id"] for r in c.runs("master_index")
             if r["dag_run_id"] != run_id and dt.datetime.fromisoformat(r["run_after"]) >= start]
    assert later == [], "nothing ran after the blocked gate"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one() == current
        attempt = conn.execute(sa.text(
            "SELECT outcome, release_no FROM audit.publish_attempt ORDER BY attempt_id DESC LIMIT 1")).one()
    assert tuple(attempt) == ("blocked", current)
    note = _note(c, run_id)
    assert "blocked by the publish gate" in note and "record_count" in note
