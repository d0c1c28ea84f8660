"""SQL extractor: a table of a legacy database through SQLAlchemy, streamed with a server-side cursor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from connectors.base import Chunk, ExtractError, ExtractState
from connectors.connections import ConnectionConfigError, ConnectionParts
from connectors.registry import SqlSource

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quoted(name: str, what: str) -> str:
    if not _IDENT.match(name):
        raise ExtractError(f"{what} {name!r} is not a plain SQL identifier")
    return f'"{name}"'


def sqlalchemy_url(connection: ConnectionParts) -> str:
    """A SQLAlchemy URL from a connection: ``extra.sqlalchemy_url``, a SQLite file, or a PostgreSQL server."""
    c = connection
    if c.extra.get("sqlalchemy_url"):
        return c.extra["sqlalchemy_url"]
    if c.conn_type == "sqlite":
        if not c.host:
            raise ConnectionConfigError(f"connection {c.conn_id!r} names no SQLite file (host)")
        if not Path(c.host).is_file():  # SQLite would create an empty database there and report a missing table
            raise ConnectionConfigError(f"connection {c.conn_id!r}: the SQLite file {c.host} does not exist")
        return f"sqlite:///{c.host}"
    if c.conn_type in ("postgres", "postgresql"):
        auth = f"{c.login or ''}" + (f":{c.password}" if c.password else "")
        return f"postgresql+psycopg2://{auth}@{c.host}:{c.port or 5432}/{c.schema or ''}"
    raise ConnectionConfigError(f"connection {c.conn_id!r}: set extra.sqlalchemy_url for conn_type {c.conn_type!r}")


class SqlExtractor:
    """A table of a legacy database: every row, or those updated at or after ``state.since``."""

    reads_cursor = True
    marks_snapshots = False

    def extract(self, source: SqlSource, connection: ConnectionParts, state: ExtractState) -> Iterator[Chunk]:
        return fetch(source, sqlalchemy_url(connection), since=state.since)


def fetch(source: SqlSource, url: str, *, since: str | None = None, chunk_rows: int = 5000) -> Iterator[Chunk]:
    """Rows of the table (updated at or after ``since`` when given), in primary-key order, ``chunk_rows`` at a time.

    ``since`` is written in the table's own format, so that it compares right with a text column too;
    rows updated in the very second of ``since`` are read again (they count as duplicates when unchanged).
    All columns are read (``SELECT *``) so that a column added at the source is noticed.
    """
    table = _quoted(source.resource, f"{source.name}: table")
    pk = _quoted(source.primary_key, f"{source.name}: primary key")
    where, params = "", {}
    if since and source.incremental:
        where, params = f" WHERE {_quoted(source.incremental.field, 'field')} >= :since", {"since": since}
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            total = conn.execute(sa.text(f"SELECT count(*) FROM {table}{where}"), params).scalar_one()
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                sa.text(f"SELECT * FROM {table}{where} ORDER BY {pk}"), params)
            columns = list(result.keys())
            start = 0
            for part in result.partitions(chunk_rows):
                records = [dict(zip(columns, row)) for row in part]
                yield Chunk(f"rows {start + 1}-{start + len(records)}", records, total, columns=columns)
                start += len(records)
        if start != total:
            raise ExtractError(f"{source.name}: read {start} rows but the table held {total} when the extract began")
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise ExtractError(f"{source.name}: the database query failed: {first}") from exc
    finally:
        engine.dispose()
