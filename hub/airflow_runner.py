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


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow-core")


def ensure_metadata_db(extra_env: dict[str, str] | None = None) -> str:
    """Create and migrate Airflow's PostgreSQL metadata database on first use (and after an Airflow
    upgrade); returns its URL. The database's comment records the Airflow version it was migrated for."""
    import sqlalchemy as sa

    from warehouse.embedded import ensure_database

    url = (extra_env or {}).get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or settings.airflow_database_url()
    target = sa.make_url(url)
    mark = f"airflow {_airflow_version()} metadata"
    try:
        ensure_database(target.set(database="postgres").render_as_string(hide_password=False), target.database)
    except sa.exc.OperationalError:
        pass  # a role without access to 'postgres': the database must exist already (checked below)
    engine = sa.create_engine(target)
    try:
        with engine.connect() as conn:
            comment = conn.execute(sa.text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
            )).scalar()
    except sa.exc.OperationalError as exc:
        raise HubError(f"Airflow's metadata database {target.render_as_string()} cannot be reached: "
                       f"{str(exc.orig).strip().splitlines()[0]}") from exc
    finally:
        engine.dispose()
    if comment == mark:
        return url
    Path(settings.airflow_env(metadata=False)["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    log = settings.hub_home() / "logs" / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        rc = subprocess.call([_airflow(), "db", "migrate"], env=env({**(extra_env or {}),
                             "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}), stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise HubError(f"airflow db migrate failed (exit {rc}); see {log}")
    engine = sa.create_engine(target, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            name = conn.execute(sa.text("SELECT quote_ident(current_database())")).scalar_one()
            conn.execute(sa.text(f"COMMENT ON DATABASE {name} IS '{mark}'"))
    finally:
        engine.dispose()
    return url


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
