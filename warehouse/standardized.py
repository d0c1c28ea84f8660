"""Reading raw records for standardizing, and writing std.resident."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from schemas.resident import STD_COLUMNS
from warehouse.bulk import copy_frame

# provenance first, then every raw, clean and status column of the canonical record
STD_TABLE_COLUMNS = ("raw_record_id", "batch_id", "program", *STD_COLUMNS)


def drop_stale(conn: sa.Connection, source: str) -> int:
    """Delete the std records of ``source`` whose raw record has a newer version or was deleted."""
    return conn.execute(sa.text(
        "DELETE FROM std.resident s WHERE s.source = :s AND NOT EXISTS ("
        " SELECT 1 FROM raw.current_record c WHERE c.source = s.source AND c.source_record_id = s.source_record_id"
        "   AND c.record_id = s.raw_record_id AND NOT c.deleted)"), {"s": source}).rowcount


def pending_raw(conn: sa.Connection, source: str, mapping: dict[str, str]) -> pd.DataFrame:
    """The newest version of every live record of ``source`` that std does not hold yet.

    Payload fields are renamed per ``mapping``; records the source has deleted are left out. An ID
    number the payload holds as a JSON number, other than an integer of at most 15 digits, is read
    as a floating-point number (``3.41522199001018e+17``): it lost digits before it arrived, and the
    text of the stored number would show made-up digits as if the source had sent them.
    """
    fields = sorted(mapping)
    select = ", ".join(
        f"CASE WHEN jsonb_typeof(c.payload -> :f_{f}) = 'number' AND c.payload ->> :f_{f} !~ '^-?[0-9]{{1,15}}$'"
        f" THEN CAST(CAST(c.payload ->> :f_{f} AS float8) AS text) ELSE c.payload ->> :f_{f} END AS {f}"
        if f == "id_number" else f"c.payload ->> :f_{f} AS {f}" for f in fields)
    sql = sa.text(
        f"SELECT c.source, c.source_record_id, c.record_id AS raw_record_id, c.batch_id, {select} "
        "FROM raw.current_record c WHERE c.source = :source AND NOT c.deleted AND NOT EXISTS ("
        " SELECT 1 FROM std.resident s WHERE s.source = c.source AND s.source_record_id = c.source_record_id)"
        " ORDER BY c.source_record_id")
    params = {"source": source, **{f"f_{f}": mapping[f] for f in fields}}
    rows = conn.execute(sql, params).mappings().all()
    return pd.DataFrame(rows, columns=["source", "source_record_id", "raw_record_id", "batch_id", *fields])


def insert_standardized(conn: sa.Connection, frame: pd.DataFrame) -> int:
    """Add standardized records to std.resident (in the caller's transaction)."""
    return copy_frame(conn, "std.resident", frame, STD_TABLE_COLUMNS)


def clear_source(conn: sa.Connection, source: str) -> int:
    return conn.execute(sa.text("DELETE FROM std.resident WHERE source = :s"), {"s": source}).rowcount


def read_for_matching(conn: sa.Connection) -> pd.DataFrame:
    """Every standardized record, with the columns matching needs."""
    from warehouse.matching_state import read_std

    cols = [c for c in STD_COLUMNS if not c.endswith("_raw") or c == "id_number_raw"]
    return read_std(conn, cols).drop(columns=["standardized_at"])
