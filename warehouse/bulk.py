"""Bulk loading with COPY."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

import pandas as pd
import sqlalchemy as sa

NULL = r"\N"


def _copy(conn: sa.Connection, table: str, columns: Sequence[str], data: str) -> None:
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '{NULL}')",
                        io.StringIO(data))


def copy_rows(conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY tuples into ``table`` (None becomes NULL, "" stays an empty string). Returns the count."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    count = 0
    for row in rows:
        writer.writerow([NULL if v is None else v for v in row])
        count += 1
    if count:
        _copy(conn, table, columns, buf.getvalue())
    return count


def copy_frame(conn: sa.Connection, table: str, frame: pd.DataFrame, columns: Sequence[str]) -> int:
    """COPY the ``columns`` of a DataFrame into ``table`` (missing values become NULL)."""
    if frame.empty:
        return 0
    data = frame.reindex(columns=list(columns)).to_csv(index=False, header=False, na_rep=NULL, lineterminator="\n")
    _copy(conn, table, columns, data)
    return len(frame)


def staging_table(conn: sa.Connection, name: str, columns_ddl: str) -> str:
    """An empty temporary table for this transaction (created on first use); returns its name."""
    conn.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns_ddl}) ON COMMIT DROP"))
    conn.execute(sa.text(f"TRUNCATE {name}"))
    return name
