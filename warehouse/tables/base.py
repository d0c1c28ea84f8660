"""The one ``MetaData`` every warehouse table and view belongs to, and the column types they share."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

#: Every table and view of the warehouse (schemas raw, std, mpi, publish and audit).
metadata = sa.MetaData()

TEXT = sa.Text()
TIMESTAMP = sa.DateTime(timezone=True)
JSONB = postgresql.JSONB()
DOUBLE = postgresql.DOUBLE_PRECISION()
TEXT_ARRAY = postgresql.ARRAY(sa.Text())


def view(name: str, schema: str, *columns: sa.Column) -> sa.Table:
    """A view, described as a Table flagged ``info={"view": True}``: it can be read like a table, and the
    comparison with the migrated database checks its columns instead of expecting a table."""
    return sa.Table(name, metadata, *columns, schema=schema, info={"view": True})


def view_of(name: str, table: sa.Table, *extra: sa.Column) -> sa.Table:
    """A view that shows every column of ``table`` (``SELECT t.* …``), and ``extra`` after them."""
    copies = [sa.Column(c.name, c.type) for c in table.columns]
    return view(name, table.schema, *copies, *extra)


def is_view(table: sa.Table) -> bool:
    """True for the views (created by the migrations as views, not tables)."""
    return bool(table.info.get("view"))
