"""Reading raw records for standardizing, and writing std.resident."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from schemas.resident import STD_COLUMNS
from warehouse.bulk import copy_frame

# provenance first, then every raw, clean and status column of the canonical record
STD_TABLE_COLUMNS = ("raw_record_id", "batch_id", "program", *STD_COLUMNS)


def latest_raw(conn: sa.Connection, source: str, mapping: dict[str, str]) -> pd.DataFrame:
    """The newest version of every live record of ``source``, payload fields renamed per ``mapping``.

    Records the source has deleted (tombstoned) are left out.
    """
    fields = sorted(mapping)
    select = ", ".join(f"payload ->> :f_{f} AS {f}" for f in fields)
    sql = sa.text(
        f"SELECT source, source_record_id, record_id AS raw_record_id, batch_id, {select} "
        "FROM raw.current_record WHERE source = :source AND NOT deleted ORDER BY source_record_id")
    params = {"source": source, **{f"f_{f}": mapping[f] for f in fields}}
    rows = conn.execute(sql, params).mappings().all()
    return pd.DataFrame(rows, columns=["source", "source_record_id", "raw_record_id", "batch_id", *fields])


def replace_source(conn: sa.Connection, source: str, frame: pd.DataFrame) -> int:
    """Replace the std records of ``source`` with ``frame`` (in the caller's transaction)."""
    conn.execute(sa.text("DELETE FROM std.resident WHERE source = :s"), {"s": source})
    return copy_frame(conn, "std.resident", frame, STD_TABLE_COLUMNS)


def read_for_matching(conn: sa.Connection) -> pd.DataFrame:
    rows = conn.execute(sa.text(
        "SELECT source, source_record_id, id_number, id_number_status, name_key FROM std.resident")).mappings().all()
    return pd.DataFrame(rows, columns=["source", "source_record_id", "id_number", "id_number_status", "name_key"])
