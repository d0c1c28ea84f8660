"""What the read API reads: the published index of the current release.

Only the columns asked for are read: what a department may not see never leaves the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from warehouse import tables


def ping(conn: sa.Connection) -> None:
    """Raises when the warehouse does not answer."""
    conn.execute(sa.select(1))


def current_release_no(conn: sa.Connection) -> int | None:
    """The number of the release in force, or None before the first publish."""
    return conn.execute(sa.select(tables.publish_current_release.c.release_no)).scalar()


def _persons(conn: sa.Connection, fields: Iterable[str], where: sa.ColumnElement[bool]) -> list[dict]:
    person = tables.publish_master_person_current
    # a KeyError for anything that is not a published column: only those may be read
    columns = [person.c[c] for c in dict.fromkeys(("master_id", *fields))]
    rows = conn.execute(sa.select(*columns).where(where).order_by(person.c.master_id)).mappings().all()
    return [dict(r) for r in rows]


def persons_by_master_id(conn: sa.Connection, master_id: str, fields: Sequence[str], *,
                         department: str | None = None) -> list[dict]:
    """The current release's person with this master id (at most one), cut to ``fields`` and master_id,
    as ``department`` may see it."""
    return _persons(conn, fields, tables.publish_master_person_current.c.master_id == master_id)


def persons_by_id_numbers(conn: sa.Connection, id_numbers: Sequence[str], fields: Sequence[str], *,
                          department: str | None = None) -> list[dict]:
    """The current release's persons holding any of these (standardized) ID numbers, by master id, as
    ``department`` may see them."""
    return _persons(conn, fields, tables.publish_master_person_current.c.id_number.in_(list(id_numbers)))


def enrolments(conn: sa.Connection, master_ids: Sequence[str], *,
               department: str | None = None) -> dict[str, list[dict]]:
    """master id → its enrolments in the current release (only ``department``'s programmes when given)."""
    if not master_ids:
        return {}
    e = tables.publish_enrolment_current
    query = (sa.select(e.c.master_id, e.c.source, e.c.source_record_id, e.c.department, e.c.program, e.c.status_raw)
             .where(e.c.master_id.in_(list(master_ids))).order_by(e.c.source, e.c.source_record_id))
    if department is not None:
        query = query.where(e.c.department == department)
    out: dict[str, list[dict]] = {}
    for r in conn.execute(query).mappings():
        r = dict(r)
        out.setdefault(r.pop("master_id"), []).append(r)
    return out
