"""The ``hub`` command as a user runs it."""

import datetime as dt
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
                                  ["ingest"], ["release", "list"], ["release", "show"], ["release", "rollback"],
                                  ["db", "stop"], ["db", "url"], ["serve"], ["api-key"], ["api-key", "create"], ["grants"],
                                  ["grants", "apply"], ["audit"], ["audit", "run"], ["ledger"], ["status"],
                                  ["review", "list"], ["history"]])
def test_help_everywhere(args):
    result = _hub(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: hub" in result.stdout


def test_version_names_the_package_and_the_commit(tmp_path):
    from importlib.metadata import version

    env = {k: v for k, v in os.environ.items() if k != "HUB_CODE_COMMIT"}
    result = subprocess.run([HUB, "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    found = re.fullmatch(rf"resident-hub {re.escape(version('resident-hub'))} \(commit ([0-9a-f]{{12}})\)\n",
                         result.stdout)
    assert found, result.stdout
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{found.group(1)}^{{commit}}"]).returncode == 0
    # outside a checkout (an installed package, an image without .git): the version alone, no failure
    outside = subprocess.run([sys.executable, "-c", "import pathlib, sys; from hub import settings;"
                              " settings.PROJECT_ROOT = pathlib.Path(sys.argv[1]);"
                              " from hub.status import version_text; print(version_text())", str(tmp_path)],
                             capture_output=True, text=True, timeout=60, env=env)
    assert outside.returncode == 0, outside.stderr
    assert outside.stdout == f"resident-hub {version('resident-hub')}\n"


def _complete(words: str) -> list[str]:
    """What bash completion offers for the command line ``words`` (the cursor at its end)."""
    parts = words.split(" ")
    env = {"_HUB_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    result = _hub(env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_shell_completion_of_commands_options_and_sources():
    from connectors.registry import load_registry

    script = _hub("--show-completion", "bash")
    assert script.returncode == 0 and "_HUB_COMPLETE=complete_bash" in script.stdout, script.stdout + script.stderr
    assert "status" in _complete("hub sta")
    assert _complete("hub release ") == ["list", "show", "rollback", "diff"]
    assert "--json" in _complete("hub status --")
    assert _complete("hub ingest mz_") == sorted(n for n in load_registry() if n.startswith("mz_"))


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


def test_a_role_without_rights_on_the_warehouse_is_one_clear_line(database_url, server_admin_url):
    """A warehouse restored with its objects owned by another role: one line naming the refusal."""
    from sqlalchemy.engine import make_url

    role = f"hub_norights_{os.getpid()}"
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        url = make_url(database_url).set(username=role, password=None).render_as_string(hide_password=False)
        result = _hub("db", "upgrade", env={"HUB_DATABASE_URL": url})
        assert result.returncode == 1, result.stdout + result.stderr
        assert "the warehouse refused this role: permission denied" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_release_show_and_rollback_from_the_cli(clean_warehouse):
    from warehouse.audit import record_gate_run
    from warehouse.releases import publish

    for version in (1, 2):
        with clean_warehouse.begin() as conn:
            conn.execute(sa.text("DELETE FROM mpi.golden"))
            conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) SELECT 'M' || i, 'rec:x/' || i"
                                 " FROM generate_series(1, 10 * :v) i ON CONFLICT DO NOTHING"), {"v": version})
            conn.execute(sa.text("INSERT INTO mpi.golden (master_id, id_number_status, record_count, sources)"
                                 " SELECT 'M' || i, 'missing', 1, ARRAY['mz_dibao'] FROM generate_series(1, 10 * :v) i"),
                         {"v": version})
            run = record_gate_run(conn, [{"suite": "master_index", "success": True, "row_count": 10 * version,
                                          "outcomes": []}], docs_path=None)
            publish(conn, run)
    shown = _hub("release", "show", "2")
    assert shown.returncode == 0, shown.stderr
    assert "release 2 — current" in shown.stdout and "10 masters added" in shown.stdout
    assert "master_index" in shown.stdout
    missing = _hub("release", "show", "9")
    assert missing.returncode == 1 and "there is no release 9 (releases: 1–2)" in missing.stderr
    back = _hub("release", "rollback", "1", "--reason", "release 2 is incomplete", "--actor", "auditor")
    assert back.returncode == 0, back.stderr
    assert "rolled back to release 1, withdrawing 2" in back.stdout
    listed = _hub("release", "list")
    assert re.search(r"│ 1 .*✓", listed.stdout) and "withdrawn" in listed.stdout
    again = _hub("release", "rollback", "1", "--reason", "again")
    assert again.returncode == 1 and "already the current release" in again.stderr


def test_api_keys_from_the_cli(clean_warehouse):
    created = _hub("api-key", "create", "health", "--label", "birth follow-up team")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = key.split(".", 1)[0]
    assert key_id.startswith("ak_") and len(key) > 40
    listed = _hub("api-key", "list")
    assert key_id in listed.stdout and key.split(".", 1)[1] not in listed.stdout
    unknown = _hub("api-key", "create", "no_such_department", "--label", "x")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert _hub("api-key", "revoke", key_id).returncode == 0
    twice = _hub("api-key", "revoke", key_id)
    assert twice.returncode == 1 and "already revoked" in twice.stderr


def test_ingest_from_the_cli_lands_the_source(clean_warehouse, platforms, county):
    result = _hub("ingest", "mz_gaoling")
    assert result.returncode == 0, result.stderr
    n = len(county.served("mz_gaoling"))
    assert f"received {n}, landed {n}, quarantined 0, duplicates 0" in result.stdout


@pytest.mark.slow
def test_demo_runs_the_dags(clean_warehouse, tmp_path):
    """One demo run through Airflow; a rerun's idempotency is covered in test_pipeline without Airflow's overhead."""
    env = {"HUB_HOME": str(tmp_path / "hub"), "HUB_DATABASE_URL": os.environ["HUB_DATABASE_URL"]}
    began = dt.datetime.now(dt.UTC)
    result = _hub("demo", "--persons", "1500", env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"master persons:\s+\d+", out)
    passed = re.search(r"expectations:\s+(\d+) passed, 0 failed", out)
    assert passed and int(passed.group(1)) > 8 * 5  # every source's suite and the master-index suites
    assert re.search(r"release:\s+1 \(published\)", out)
    docs = re.search(r"validation report:\s+(\S+)", out).group(1)
    assert Path(docs).is_file()
    scorecard = re.search(r"quality scorecard:\s+(\S+)", out).group(1)
    assert Path(scorecard).is_file() and "民政" in Path(scorecard).read_text(encoding="utf-8")
    departments = {p.stem.removeprefix("scorecard_") for p in Path(scorecard).parent.glob("scorecard_*.html")}
    assert departments == {"civil_affairs", "health", "social_security"}
    _ledger_from_the_cli(env, tmp_path)
    logs = tmp_path / "hub" / "logs"
    assert (logs / "master_index.log").is_file()
    assert {p.stem for p in logs.glob("ingest_*.log")} == {f"ingest_{s}" for s in settings_sources()}
    with clean_warehouse.connect() as conn:
        sources = conn.execute(sa.text("SELECT count(DISTINCT source) FROM raw.record")).scalar_one()
    assert sources == len(settings_sources())
    # the time per step: every ingestion DAG and every task of the master-index DAG
    times = out[out.index("Time per step"):]
    for step in [*(f"ingest_{s}" for s in settings_sources()), "master_index DAG", "standardize", "match", "gate",
                 "publish", "audit", "report"]:
        assert re.search(rf"│\s+{step}\s+│\s+\d+\.\d │", times), step
    # real Airflow runs, the ingestion DAGs side by side, and no asset event left queued for master_index
    airflow = sa.create_engine(os.environ["HUB_AIRFLOW_DATABASE_URL"])
    try:
        with airflow.connect() as conn:
            runs = conn.execute(sa.text("SELECT dag_id, state, start_date, end_date FROM dag_run"
                                        " WHERE start_date >= :began"), {"began": began}).all()
            queued = conn.execute(sa.text("SELECT count(*) FROM asset_dag_run_queue WHERE created_at >= :began"),
                                  {"began": began}).scalar_one()
    finally:
        airflow.dispose()
    ingest = [r for r in runs if r.dag_id.startswith("ingest_")]
    assert sorted(r.dag_id for r in runs) == sorted([*(f"ingest_{s}" for s in settings_sources()), "master_index"])
    assert all(r.state == "success" for r in runs)
    assert max(r.start_date for r in ingest) < min(r.end_date for r in ingest)
    assert queued == 0


def _ledger_from_the_cli(env, tmp_path):
    from openpyxl import load_workbook

    listed = _hub("ledger", "--list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "dibao" in listed.stdout and "最低生活保障户台账" in listed.stdout
    town = re.search(r"communities \(\d+\): (\S+)", listed.stdout).group(1)
    out = tmp_path / "ledgers"
    out.mkdir()
    made = _hub("ledger", "gaoling", "--community", town, "--out", str(out), env=env)
    assert made.returncode == 0, made.stderr
    rows = int(re.search(r"gaoling ledger for \S+: (\d+) persons", made.stdout).group(1))
    (path,) = out.glob("*.xlsx")
    ws = load_workbook(path).worksheets[0]
    numbered = [r for r in ws.iter_rows(values_only=True) if isinstance(r[0], int)]
    assert rows > 0 and len(numbered) == rows
    missing = _hub("ledger", "gaoling", env=env)
    assert missing.returncode == 1 and "--community is required" in missing.stderr
    unknown = _hub("ledger", "wubao", "--community", town, env=env)
    assert unknown.returncode == 1 and "unknown ledger kind 'wubao'" in unknown.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr


def settings_sources():
    from hub.pipeline import source_names

    return source_names()
