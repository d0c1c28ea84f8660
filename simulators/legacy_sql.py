"""The legacy birth-registration database (出生医学登记): an SQL table with terse column names.

It is a file database (SQLite) reached through SQLAlchemy, so it runs anywhere without a server.
Rows are updated in place and deleted logically (SCBZ = '1'); GXSJ is the update time.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from simulators.subsystems import SUBSYSTEMS

NAME = "wj_chusheng"


def write_legacy_db(county, path: Path) -> str:
    """Write (or rewrite) the legacy database for ``county``'s day; returns its SQLAlchemy URL."""
    sub = SUBSYSTEMS[NAME]
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    frame = county.served(NAME)
    columns = list(frame.columns)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            ddl = ", ".join(f'"{c}" VARCHAR(200)' + (" PRIMARY KEY" if c == sub.fields["record_id"] else "")
                            for c in columns)
            conn.execute(sa.text(f'CREATE TABLE IF NOT EXISTS "{sub.resource}" ({ddl})'))
            conn.execute(sa.text(f'DELETE FROM "{sub.resource}"'))
            placeholders = ", ".join(f":p{i}" for i in range(len(columns)))
            rows = [{f"p{i}": v for i, v in enumerate(r)} for r in frame.itertuples(index=False)]
            if rows:
                conn.execute(sa.text(f'INSERT INTO "{sub.resource}" VALUES ({placeholders})'), rows)
    finally:
        engine.dispose()
    return url
