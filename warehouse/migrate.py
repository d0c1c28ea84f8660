"""Run the warehouse's Alembic migrations against a database URL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> str:
    """Upgrade the warehouse to ``revision``; returns the revision it is at afterwards."""
    from alembic import command

    with engine.begin() as conn:
        # one migrator at a time, even when a DAG and the CLI start together
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(20261121)"))
        command.upgrade(_config(conn), revision)
    return current_revision(engine)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
