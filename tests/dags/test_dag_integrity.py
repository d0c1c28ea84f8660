"""Every DAG file parses fast, touches no database or network, and is documented."""

import json
import os
import subprocess
import sys
import textwrap

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
                               "retries": [t.retries for t in d.tasks]} for d in bag.dags.values()}}
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


def test_dags_parse_fast_without_database_or_network(tmp_path):
    result, home = _probe(tmp_path)
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
