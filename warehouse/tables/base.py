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


def golden_columns() -> list[sa.Column]:
    """The person columns of a golden record, shared by ``mpi.golden`` and the published
    ``publish.master_person`` (a release holds the golden records as they were published)."""
    return [
        sa.Column("name", TEXT),
        sa.Column("id_number", TEXT),
        sa.Column("id_number_status", TEXT, nullable=False),
        sa.Column("sex", sa.SmallInteger),
        sa.Column("birth_date", sa.Date),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column("sources", TEXT_ARRAY, nullable=False),
        sa.Column("phone", TEXT),
        sa.Column("address", TEXT),
        sa.Column("status", TEXT),
        sa.Column("status_date", sa.Date),
        sa.Column("conflicts", sa.Integer, nullable=False),
    ]


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
