"""Running the project's DAGs through Airflow's own commands, with the project's AIRFLOW_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hub import settings
from hub.errors import HubError


def _airflow() -> str:
    exe = Path(sys.executable).with_name("airflow")
    return str(exe) if exe.exists() else (shutil.which("airflow") or "airflow")


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Airflow's own commands start further 'airflow' processes by name: put ours first on PATH
    path = os.pathsep.join([str(Path(_airflow()).parent), os.environ.get("PATH", "")])
    return {**os.environ, **settings.airflow_env(), "PATH": path, **(extra or {})}


def ensure_metadata_db(extra_env: dict[str, str] | None = None) -> None:
    """Create Airflow's metadata database under AIRFLOW_HOME on first use."""
    home = Path(settings.airflow_env()["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if (home / "airflow.db").exists():
        return
    log = settings.hub_home() / "logs" / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        rc = subprocess.call([_airflow(), "db", "migrate"], env=env(extra_env), stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise HubError(f"airflow db migrate failed (exit {rc}); see {log}")


def test_dag(dag_id: str, extra_env: dict[str, str] | None = None) -> Path:
    """Run one DAG once with ``airflow dags test``; returns its log file, raises with the log's tail on failure."""
    log = settings.hub_home() / "logs" / f"{dag_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        rc = subprocess.call([_airflow(), "dags", "test", dag_id], env=env(extra_env), stdout=out,
                             stderr=subprocess.STDOUT)
    if rc != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line or "error" in line][-5:]
        raise HubError(f"DAG {dag_id} failed (exit {rc}); log: {log}" + ("\n  " + "\n  ".join(tail) if tail else ""))
    return log


def standalone(extra_env: dict[str, str] | None = None) -> int:
    """Start ``airflow standalone`` (scheduler, API server, UI) in the foreground."""
    ensure_metadata_db(extra_env)
    return subprocess.call([_airflow(), "standalone"], env=env(extra_env))
