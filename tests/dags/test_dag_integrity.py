"""Every DAG file parses fast, touches no database or network, and is documented."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from hub import settings

PROBE = textwrap.dedent("""
    import json, socket, sys
    def refuse(*a, **k):
        raise RuntimeError("network access while parsing DAGs")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    def schedule(d):
        cond = getattr(d.timetable, "asset_condition", None)
        out = {"kind": type(cond).__name__, "assets": sorted(a.uri for a in getattr(cond, "objects", []))}
        inner = getattr(d.timetable, "timetable", None)  # AssetOrTimeSchedule: the time part
        if inner is not None:
            out["daily_at"] = getattr(inner, "_expression", None) or getattr(inner, "expression", None)
        return out
    out = {"errors": {k: str(v)[:500] for k, v in bag.import_errors.items()},
           "stats": [{"file": s.file, "seconds": s.duration.total_seconds()} for s in bag.dagbag_stats],
           "dags": {d.dag_id: {"owner": d.owner, "tags": sorted(d.tags), "doc": bool(d.doc_md),
                               "schedule": schedule(d), "max_active_runs": d.max_active_runs,
                               "pools": sorted({t.pool for t in d.tasks}),
                               "retries": [t.retries for t in d.tasks],
                               "backoff": sorted({(t.retry_exponential_backoff, t.max_retry_delay.total_seconds(),
                                                   t.retry_delay.total_seconds()) for t in d.tasks}),
                               "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids),
                                                     "teardown": t.is_teardown,
                                                     "fails_run": t.on_failure_fail_dagrun} for t in d.tasks}}
                    for d in bag.dags.values()}}
    print("PROBE" + json.dumps(out))
""")


def _probe(tmp_path, **extra: str):
    home = tmp_path / "home"
    env = {**os.environ, **settings.airflow_env(), "HUB_HOME": str(home),
           "AIRFLOW_HOME": str(tmp_path / "airflow"),
           # any attempt to reach a warehouse would fail loudly
           "HUB_DATABASE_URL": "postgresql+psycopg2://nobody@/nowhere?host=/nonexistent"}
    for name in ("HUB_DAG_RETRIES", "HUB_DAG_RETRY_DELAY", "HUB_DAG_MAX_RETRY_DELAY",
                 "HUB_MASTER_INDEX_DAILY_AT"):  # the defaults
        env.pop(name, None)
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", PROBE, str(settings.DAGS_FOLDER)], env=env, capture_output=True,
                         text=True, timeout=180, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("PROBE"))
    return json.loads(line[5:]), home


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """The DAG folder parsed once in a fresh process (what the dag-processor does)."""
    return _probe(tmp_path_factory.mktemp("probe"))


def test_dags_parse_fast_without_database_or_network(probed):
    result, home = probed
    assert result["errors"] == {}
    files = {os.path.basename(s["file"]) for s in result["stats"]}
    assert files == {p.name for p in settings.DAGS_FOLDER.glob("*.py")}
    for stat in result["stats"]:
        assert stat["seconds"] < 2.0, stat
    assert not (home / "pg").exists(), "parsing DAGs started the embedded database"

    dags = result["dags"]
    assert {"master_index", "ingest_mz_dibao", "ingest_mz_gaoling"} <= set(dags)
    for dag_id, d in dags.items():
        assert d["owner"] and d["owner"] != "airflow", dag_id
        assert d["tags"], dag_id
        assert d["doc"], dag_id
        assert all(r is not None for r in d["retries"]), dag_id


def test_master_index_builds_the_reports_once_after_the_audit(probed):
    """One ``report`` task, after ``audit``: it runs whatever happened upstream (a teardown, so a blocked gate
    shows on the scorecard) and does not decide the run's state (a failed gate still fails the run)."""
    result, _ = probed
    tasks = result["dags"]["master_index"]["tasks"]
    assert list(tasks) == ["standardize", "match", "gate", "publish", "audit", "report"]
    assert tasks["audit"]["upstream"] == ["publish"]
    assert tasks["report"] == {"upstream": ["audit"], "teardown": True, "fails_run": False}
    assert not any(t["teardown"] for name, t in tasks.items() if name != "report")
    assert not any("report" in t["upstream"] for t in tasks.values()), "the report task is the last step"


def test_master_index_runs_once_every_source_has_landed(probed):
    """The ingestion DAGs run side by side (nothing serialises them: no pool, one run of each at a time); the
    master index is scheduled on all their Assets together, so it runs once after the last load, not per source."""
    from hub.dag_config import raw_asset_uri, sources

    result, _ = probed
    dags = result["dags"]
    names = [s["name"] for s in sources()]
    assert dags["master_index"]["schedule"] == {"kind": "AssetAll",
                                                "assets": sorted(raw_asset_uri(n) for n in names)}
    for name in names:
        assert dags[f"ingest_{name}"]["schedule"]["kind"] == "NoneType", name  # a time schedule, no Assets
        assert dags[f"ingest_{name}"]["max_active_runs"] == 1, name
        assert dags[f"ingest_{name}"]["pools"] == ["default_pool"], name


def test_a_daily_time_makes_the_master_index_run_each_day_even_when_a_source_is_missing(tmp_path):
    """HUB_MASTER_INDEX_DAILY_AT: every source landed, or the daily time — whichever comes first."""
    from hub.dag_config import raw_asset_uri, sources

    result, _ = _probe(tmp_path, HUB_MASTER_INDEX_DAILY_AT="0 6 * * *")
    assert result["dags"]["master_index"]["schedule"] == {
        "kind": "AssetAll", "assets": sorted(raw_asset_uri(s["name"]) for s in sources()), "daily_at": "0 6 * * *"}


def test_tasks_retry_twice_with_growing_waits_by_default(probed):
    result, _ = probed
    for dag_id, d in result["dags"].items():
        assert set(d["retries"]) == {2}, dag_id
        assert d["backoff"] == [[2.0, 1800.0, 60.0]], dag_id


def test_transient_faults_are_retried_and_data_faults_are_not(clean_warehouse, tmp_path, monkeypatch):
    """Real faults from the real extractors: a platform that refuses the connection may come back (retried);
    a drop folder that does not exist, a gate that failed or files set aside will not (failed at once)."""
    import socket

    from connectors.connections import ConnectionParts
    from hub.dag_config import data_fault
    from hub.errors import GateFailed
    from hub.pipeline import FilesHeld, ingest_source

    monkeypatch.setenv("HUB_HTTP_TIMEOUT", "2")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(Exception) as refused:
        ingest_source("mz_dibao", ConnectionParts("mz_platform", "http", "127.0.0.1", closed, "u", "p", "http"))
    assert "connection refused" in str(refused.value)
    assert data_fault(refused.value) is None

    with pytest.raises(Exception) as missing:
        ingest_source("mz_canji", ConnectionParts("drops", "fs", extra={"path": str(tmp_path / "absent")}))
    assert "does not exist" in (data_fault(missing.value) or "")

    assert "not retried" in data_fault(GateFailed("the publish gate failed 1 of 9 expectations"))
    assert "not retried" in data_fault(FilesHeld("mz_canji: a.csv set aside"))
    assert data_fault(ConnectionResetError("reset by peer")) is None
