"""The ``hub`` command as a user runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

HUB = str(Path(sys.executable).with_name("hub"))


def _hub(*args, env=None, timeout=120):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args", [[], ["db"], ["release"], ["demo"], ["db", "upgrade"], ["airflow"], ["simulate"],
                                  ["ingest"], ["release", "list"], ["db", "stop"], ["db", "url"]])
def test_help_everywhere(args):
    result = _hub(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: hub" in result.stdout


def test_unknown_source_is_one_clear_line_and_exit_1(database_url):
    result = _hub("ingest", "no_such_source")
    assert result.returncode == 1
    assert "unknown source 'no_such_source'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_connection_is_a_clear_error(database_url):
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_MZ_PLATFORM"}
    result = subprocess.run([HUB, "ingest", "mz_dibao"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "AIRFLOW_CONN_MZ_PLATFORM" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_warehouse_is_a_clear_error():
    result = _hub("db", "upgrade", env={"HUB_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 1
    assert "cannot reach the warehouse database" in result.stderr and "Traceback" not in result.stderr


def test_ingest_from_the_cli_lands_the_source(clean_warehouse, platforms, county):
    result = _hub("ingest", "mz_gaoling")
    assert result.returncode == 0, result.stderr
    n = len(county.served("mz_gaoling"))
    assert f"received {n}, landed {n}, quarantined 0, duplicates 0" in result.stdout


@pytest.mark.slow
def test_demo_runs_the_dags(clean_warehouse, tmp_path):
    """One demo run through Airflow; a rerun's idempotency is covered in test_pipeline without Airflow's overhead."""
    env = {"HUB_HOME": str(tmp_path / "hub"), "HUB_DATABASE_URL": os.environ["HUB_DATABASE_URL"]}
    result = _hub("demo", "--persons", "1500", env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"master persons:\s+\d+", out)
    assert re.search(r"expectations:\s+11 passed, 0 failed", out)
    assert re.search(r"release:\s+1 \(published\)", out)
    docs = re.search(r"validation report:\s+(\S+)", out).group(1)
    assert Path(docs).is_file()
    logs = tmp_path / "hub" / "logs"
    assert (logs / "master_index.log").is_file()
    assert {p.stem for p in logs.glob("ingest_*.log")} == {f"ingest_{s}" for s in settings_sources()}
    with clean_warehouse.connect() as conn:
        sources = conn.execute(sa.text("SELECT count(DISTINCT source) FROM raw.record")).scalar_one()
    assert sources == len(settings_sources())


def settings_sources():
    from hub.pipeline import source_names

    return source_names()
