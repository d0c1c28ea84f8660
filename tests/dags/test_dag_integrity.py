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
    out = {"errors": {k: str(v)[:500] for k, v in bag.import_errors.items()},
           "stats": [{"file": s.file, "seconds": s.duration.total_seconds()} for s in bag.dagbag_stats],
           "dags": {d.dag_id: {"owner": d.owner, "tags": sorted(d.tags), "doc": bool(d.doc_md),
                               "retries": [t.retries for t in d.tasks],
                               "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids),
                                                     "teardown": t.is_teardown,
                                                     "fails_run": t.on_failure_fail_dagrun} for t in d.tasks}}
                    for d in bag.dags.values()}}
    print("PROBE" + json.dumps(out))
""")


def _probe(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, **settings.airflow_env(), "HUB_HOME": str(home),
           "AIRFLOW_HOME": str(tmp_path / "airflow"),
           # any attempt to reach a warehouse would fail loudly
           "HUB_DATABASE_URL": "postgresql+psycopg2://nobody@/nowhere?host=/nonexistent"}
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
