"""Shared fixtures: a real PostgreSQL database, the simulated platform on loopback, Airflow's home.

The database is a throwaway one per test session, on the server named by
``HUB_TEST_DATABASE_URL`` or, without it, on the hub's embedded PostgreSQL (under
``.hub/test-pg``, stopped when the session ends).
"""

from __future__ import annotations

import functools
import os
import tempfile
import uuid
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

# Airflow reads its settings when first imported: point it at a session folder before anything does.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="hub-test-"))
os.environ["HUB_HOME"] = str(_SESSION_HOME)
os.environ["HUB_DAG_RETRIES"] = "0"
# the pipeline's statistical reports (every kind for every community) are tested in
# tests/reports/test_statistics.py; the scheduler's deployment writes one kind (tests/dags/airflow_cluster.py)
os.environ["HUB_REPORTS"] = "none"
os.environ.pop("HUB_DATABASE_URL", None)

from hub import settings  # noqa: E402

PROJECT_ROOT = settings.PROJECT_ROOT
_SESSION_DB = f"hub_test_{uuid.uuid4().hex[:10]}"


@functools.cache
def _server_admin_url() -> tuple[str, bool]:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if url:
        return settings.normalize_url(url), False
    from warehouse.embedded import start_embedded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return start_embedded(PROJECT_ROOT / ".hub" / "test-pg", database="postgres", keep_running=False), True


# Airflow's metadata: a throwaway PostgreSQL database of this session, beside the warehouse's
os.environ["HUB_AIRFLOW_DATABASE_URL"] = make_url(_server_admin_url()[0]).set(
    database=f"{_SESSION_DB}_airflow").render_as_string(hide_password=False)
os.environ.update(settings.airflow_env())


@pytest.fixture(scope="session")
def server_admin_url() -> str:
    return _server_admin_url()[0]


@pytest.fixture(scope="session")
def database_url(server_admin_url):
    """A fresh, migrated warehouse database for this session; HUB_DATABASE_URL points at it."""
    from warehouse.embedded import ensure_database
    from warehouse.migrate import upgrade

    name = _SESSION_DB
    ensure_database(server_admin_url, name)
    url = make_url(server_admin_url).set(database=name).render_as_string(hide_password=False)
    os.environ["HUB_DATABASE_URL"] = url
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    os.environ.pop("HUB_DATABASE_URL", None)
    settings._engine.cache_clear()
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for db in (name, f"{name}_airflow"):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url):
    return settings.engine()


@pytest.fixture
def clean_warehouse(engine):
    """Empty every warehouse table before a test that needs a blank slate."""
    from tests.helpers import empty_warehouse

    empty_warehouse(engine)
    return engine


@pytest.fixture(scope="session")
def county():
    """A small simulated county on day 0."""
    from simulators.county import SimulatedCounty
    from simulators.population import CountySpec

    return SimulatedCounty.create(CountySpec(persons=3000, seed=11))


@pytest.fixture(scope="session")
def _served_platforms(county, tmp_path_factory):
    from hub.simulation import connection_env
    from simulators.platforms import start_platforms

    running = start_platforms(county, tmp_path_factory.mktemp("sim"))
    env = connection_env(running)
    os.environ.update(env)
    yield running
    running.stop()
    for key in env:
        os.environ.pop(key, None)


@pytest.fixture
def platforms(_served_platforms, county):
    """Every simulated subsystem served on loopback, with the connections in the environment.

    Each test gets tonight's drop files afresh (an earlier test's ingest moved them aside).
    """
    _served_platforms.set_faults(None)
    _served_platforms.advance(county)
    return _served_platforms


@pytest.fixture(scope="session")
def airflow_db(database_url):
    """Airflow's metadata database: the session's PostgreSQL database beside the warehouse's."""
    from hub.airflow_runner import ensure_metadata_db

    ensure_metadata_db()
    yield Path(os.environ["AIRFLOW_HOME"])
    import sys

    if "airflow.settings" in sys.modules:  # close Airflow's connections before its database is dropped
        sys.modules["airflow.settings"].dispose_orm()
