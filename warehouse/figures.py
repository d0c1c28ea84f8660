"""Figures of what the warehouse holds, for summaries: records per source and layer, masters."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from warehouse.tables import mpi_golden, raw_record, std_resident


def records_per_source(conn: sa.Connection, sources: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per source (sorted), the record versions landed in raw and the standardized records in std;
    a source with none counts 0."""
    names = sorted(set(sources))

    def counted(table: sa.Table) -> dict[str, int]:
        return dict(conn.execute(sa.select(table.c.source, sa.func.count()).where(table.c.source.in_(names))
                                 .group_by(table.c.source)).all())

    raw, std = counted(raw_record), counted(std_resident)
    return {name: {"raw": raw.get(name, 0), "standardized": std.get(name, 0)} for name in names}


def master_count(conn: sa.Connection) -> int:
    """The master persons in the index: one golden record each."""
    return conn.execute(sa.select(sa.func.count()).select_from(mpi_golden)).scalar_one()
