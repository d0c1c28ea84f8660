"""What the master view reads of a master id's golden record: every golden value with where it came from and
the rule that decided (``mpi.golden_value``), and the values its records disagree on (``mpi.golden_conflict``).

Rows come back as stored, names and ID numbers included: the caller masks them before they leave.
"""

from __future__ import annotations

import sqlalchemy as sa

from warehouse.tables import mpi_golden_conflict, mpi_golden_value


def golden_values(conn: sa.Connection, master_id: str) -> list[dict]:
    """The golden values of a master id: field, value, source, source_record_id, loaded_at, rule."""
    g = mpi_golden_value
    return [dict(r) for r in conn.execute(
        sa.select(g.c.field, g.c.value, g.c.source, g.c.source_record_id, g.c.loaded_at, g.c.rule)
        .where(g.c.master_id == master_id).order_by(g.c.field)).mappings()]


def golden_conflicts(conn: sa.Connection, master_id: str) -> list[dict]:
    """The values of a master id's records that disagree, per field: value, sources, records, chosen."""
    c = mpi_golden_conflict
    return [dict(r) for r in conn.execute(
        sa.select(c.c.field, c.c.value, c.c.sources, c.c.records, c.c.chosen)
        .where(c.c.master_id == master_id).order_by(c.c.field, c.c.chosen.desc(), c.c.records.desc(), c.c.value)
    ).mappings()]
