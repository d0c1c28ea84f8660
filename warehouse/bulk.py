"""Bulk loading with COPY, and loading a whole table with its secondary indexes built afterwards; bulk reading
with COPY; temporary staging tables, and a column's distinct values read by skipping through its index."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
import sqlalchemy as sa

NULL = r"\N"
CHUNK_ROWS = 200_000


def _copy(conn: sa.Connection, table: str, columns: Sequence[str], data: str) -> None:
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '{NULL}')",
                        io.StringIO(data))


def copy_out(conn: sa.Connection, sql: str, columns: Sequence[str], params: dict | None = None) -> pd.DataFrame:
    """The rows of the query ``sql`` read with COPY (several times faster than fetching rows), every column as pandas
    strings (NaN for NULL). ``params`` fill psycopg2 ``%(name)s`` placeholders (a list becomes an array)."""
    buf = io.StringIO()
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        query = cursor.mogrify(sql, params).decode() if params else sql
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER false, NULL '{NULL}')", buf)
    finally:
        cursor.close()
    buf.seek(0)
    return pd.read_csv(buf, names=list(columns), header=None, dtype=str, na_values=[NULL], keep_default_na=False)


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


class _Stream(io.RawIOBase):
    """A readable file over an iterator of byte strings (what COPY FROM STDIN reads, chunk by chunk)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._current = chunks, io.BytesIO()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while True:
            out = self._current.read(size)
            if out:
                return out
            nxt = next(self._chunks, None)
            if nxt is None:
                return b""
            self._current = io.BytesIO(nxt)


def _arrow_chunks(frame: pd.DataFrame, columns: Sequence[str], chunk_rows: int) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start:start + chunk_rows].reindex(columns=list(columns))
        buf = io.BytesIO()
        pacsv.write_csv(pa.Table.from_pandas(part, preserve_index=False), buf, options)
        yield buf.getvalue()


def copy_columns(conn: sa.Connection, table: str, frame: pd.DataFrame, columns: Sequence[str],
                 chunk_rows: int = CHUNK_ROWS) -> int:
    """COPY the ``columns`` of a DataFrame of text, numbers and booleans into ``table``, fast: Arrow writes
    the CSV a chunk at a time while PostgreSQL reads it (missing values become NULL, "" stays an empty
    string). Columns of other kinds (dates, objects) go through :func:`copy_frame`."""
    if frame.empty:
        return 0
    if not all(c in frame.columns and _plain(frame[c]) for c in columns):
        return copy_frame(conn, table, frame, columns)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)",
                        _Stream(_arrow_chunks(frame, columns, chunk_rows)), size=1 << 20)
    return len(frame)


def _plain(values: pd.Series) -> bool:
    """Text (missing values allowed), numbers or booleans: what Arrow writes as PostgreSQL reads it."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    if values.dtype == object:
        return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")
    return pd.api.types.is_string_dtype(values)


@contextmanager
def indexes_deferred(conn: sa.Connection, table: str, work_mem: str = "256MB") -> Iterator[None]:
    """Drop ``table``'s secondary indexes (those not behind a primary key, unique or exclusion constraint),
    let the caller load it, then build them again as they were and ANALYZE the table: a whole-table load
    then writes each index once, sorted, instead of row by row. Inside the caller's transaction (an error
    rolls the drop back too)."""
    schema, name = table.split(".", 1)
    defs = conn.execute(sa.text(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i"
        " JOIN pg_class ic ON ic.relname = i.indexname"
        " JOIN pg_namespace n ON n.oid = ic.relnamespace AND n.nspname = i.schemaname"
        " WHERE i.schemaname = :s AND i.tablename = :t"
        "   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ic.oid)"
        " ORDER BY i.indexname"), {"s": schema, "t": name}).all()
    for index_name, _ in defs:
        conn.execute(sa.text(f'DROP INDEX "{schema}"."{index_name}"'))
    yield
    conn.execute(sa.text(f"SET LOCAL maintenance_work_mem = '{work_mem}'"))
    for _, definition in defs:
        conn.execute(sa.text(definition))
    conn.execute(sa.text(f"ANALYZE {table}"))


@contextmanager
def deferred_when_empty(conn: sa.Connection, table: str) -> Iterator[bool]:
    """When ``table`` is empty (the first run of a warehouse), drop its foreign keys and secondary indexes
    while the caller fills it, then add them back: each index is built once, sorted, and each foreign key
    checked by one join instead of row by row. A table holding rows is left as it is (readers keep their
    indexes). Yields whether the table was empty."""
    empty = conn.execute(sa.text(f"SELECT NOT EXISTS (SELECT 1 FROM {table})")).scalar_one()
    if not empty:
        yield False
        return
    keys = conn.execute(sa.text(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = CAST(:t AS regclass) AND contype = 'f' ORDER BY conname"), {"t": table}).all()
    for name, _ in keys:
        conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    with indexes_deferred(conn, table):
        yield True
    for name, definition in keys:
        conn.execute(sa.text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))


def staging_table(conn: sa.Connection, name: str, columns_ddl: str) -> str:
    """An empty temporary table for this transaction (created on first use); returns its name."""
    conn.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns_ddl}) ON COMMIT DROP"))
    conn.execute(sa.text(f"TRUNCATE {name}"))
    return name


def leading_values(conn: sa.Connection, table: str, column: str) -> list:
    """The distinct values of ``column`` in ``table``, sorted, read by skipping through an index that leads with
    the column: one probe per value instead of a read of every row (the sources of ``std.resident`` and
    ``mpi.crosswalk``, whose keys lead with the source)."""
    return list(conn.execute(sa.text(
        f"WITH RECURSIVE v (value) AS ((SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column}"
        f" LIMIT 1) UNION ALL SELECT (SELECT t.{column} FROM {table} t WHERE t.{column} > v.value"
        f" ORDER BY t.{column} LIMIT 1) FROM v WHERE v.value IS NOT NULL) SELECT value FROM v WHERE value IS NOT NULL"
    )).scalars())
