"""Where the hub keeps its state, and how it reaches its warehouse.

- ``HUB_HOME``: the state folder (default ``.hub/`` in the project).
- ``HUB_DATABASE_URL``: a PostgreSQL 14+ server (SQLAlchemy URL). Without it the hub starts its
  embedded PostgreSQL under ``HUB_HOME/pg`` and reuses it on the next run.
- ``HUB_AIRFLOW_DATABASE_URL``: Airflow's metadata database (default: ``<warehouse>_airflow`` on the
  warehouse's server).
- ``HUB_REPORTS``: the statistical reports the pipeline writes after each release (``all``, ``none``
  or ``dibao,gaoling``; see :func:`statistical_reports`), when their reporting calendar says they are due
  (``HUB_REPORTS_DUE``, :func:`reports_every_release`).
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from hub.errors import SettingError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = PROJECT_ROOT / "dags"


def hub_home() -> Path:
    return Path(os.environ.get("HUB_HOME") or PROJECT_ROOT / ".hub").resolve()


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs and use the psycopg2 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def database_url() -> str:
    """The warehouse URL: ``HUB_DATABASE_URL``, or the embedded server (started if needed)."""
    url = os.environ.get("HUB_DATABASE_URL")
    if url:
        return normalize_url(url)
    return _embedded_url(str(hub_home() / "pg"))


@lru_cache(maxsize=4)
def _embedded_url(pgdata: str) -> str:
    from warehouse.embedded import start_embedded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        return start_embedded(Path(pgdata))


@lru_cache(maxsize=4)
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True)


def engine() -> sa.Engine:
    return _engine(database_url())


def http_timeout() -> float:
    """Seconds to wait for a departmental platform's answer (``HUB_HTTP_TIMEOUT``, default 30)."""
    return float(os.environ.get("HUB_HTTP_TIMEOUT", "30"))


def retry_after_cap() -> float:
    """Seconds the hub waits at most when a platform answers "retry later" (``HUB_RETRY_AFTER_CAP``, default 60)."""
    return float(os.environ.get("HUB_RETRY_AFTER_CAP", "60"))


def extract_deadline() -> float:
    """Seconds an extract from a departmental platform may take in all (``HUB_EXTRACT_DEADLINE``, default
    1800); past it the load fails and can be run again."""
    return float(os.environ.get("HUB_EXTRACT_DEADLINE", "1800"))


def default_county() -> str | None:
    """GB/T 2260 code of the county the hub serves (``HUB_DEFAULT_COUNTY``), assumed for addresses
    written below the county level; unset, such addresses stay 'partial'."""
    return os.environ.get("HUB_DEFAULT_COUNTY") or None


def match_options() -> dict:
    """Options for the matcher's DuckDB: ``HUB_MATCH_MEMORY`` bounds its memory (default 400MB;
    past it, DuckDB spills to the temporary folder)."""
    return {"memory_limit": os.environ.get("HUB_MATCH_MEMORY") or "400MB"}


MATCH_BACKENDS = ("duckdb", "spark")


def match_backend() -> str:
    """The matcher's backend (``HUB_MATCH_BACKEND``): ``duckdb`` (the default, in this process) or ``spark``
    (Spark, on the master ``HUB_SPARK_MASTER`` names)."""
    value = (os.environ.get("HUB_MATCH_BACKEND") or "duckdb").strip().lower()
    if value not in MATCH_BACKENDS:
        raise SettingError(f"HUB_MATCH_BACKEND={value!r}: expected one of {', '.join(MATCH_BACKENDS)}")
    return value


def spark_master() -> str:
    """The Spark master the Spark backend runs on (``HUB_SPARK_MASTER``): ``local[*]`` by default (every core of
    this machine); ``spark://host:7077`` for a standalone cluster, ``yarn``, or ``k8s://https://host:port``."""
    return (os.environ.get("HUB_SPARK_MASTER") or "local[*]").strip()


def statistical_reports() -> list[str] | None:
    """Which statistical report kinds (统计报表) the pipeline writes, when they are due, into
    ``HUB_HOME/reports/<release>/`` (``HUB_REPORTS``): ``all`` (the default), ``none``, or kinds separated by
    commas (``dibao,gaoling``). Returns the kinds, None for all, [] for none."""
    value = (os.environ.get("HUB_REPORTS") or "all").strip()
    if value.lower() == "all":
        return None
    if value.lower() == "none":
        return []
    return [k.strip() for k in value.split(",") if k.strip()]


REPORTS_DUE = ("calendar", "every_release")


def reports_every_release() -> bool:
    """Whether the pipeline writes the statistical reports after every release (``HUB_REPORTS_DUE=every_release``)
    rather than when the reporting calendar of ``reports/statistics.yaml`` says a kind is due (``calendar``, the
    default: the first release of each month writes the monthly kinds)."""
    value = (os.environ.get("HUB_REPORTS_DUE") or "calendar").strip().lower()
    if value not in REPORTS_DUE:
        raise SettingError(f"HUB_REPORTS_DUE={value!r}: expected one of {', '.join(REPORTS_DUE)}")
    return value == "every_release"


def gx_dir() -> Path:
    return hub_home() / "gx"


def airflow_database_url() -> str:
    """Airflow's metadata database: ``HUB_AIRFLOW_DATABASE_URL``, or by default a second database
    ``<warehouse>_airflow`` on the warehouse's server (the embedded one unless ``HUB_DATABASE_URL``)."""
    url = os.environ.get("HUB_AIRFLOW_DATABASE_URL")
    if url:
        return normalize_url(url)
    warehouse = sa.make_url(database_url())
    return warehouse.set(database=f"{warehouse.database}_airflow").render_as_string(hide_password=False)


def airflow_env(*, metadata: bool = True) -> dict[str, str]:
    """Environment for Airflow's commands and components: the project's AIRFLOW_HOME and dags folder,
    and (unless ``metadata`` is false) its PostgreSQL metadata database."""
    home = hub_home() / "airflow"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # the hub's own packages must import inside Airflow's processes
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    if metadata:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = airflow_database_url()
    return env
