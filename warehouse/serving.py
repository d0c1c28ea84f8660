"""What the read API reads: the published index of the current release.

Only the columns asked for are read: what a department may not see never leaves the database.

With ``department`` given (the read API always gives the caller's), persons and enrolments are read
through the department's views, ``dept_<department>.master_person`` and ``dept_<department>.enrolment``,
after ``SET LOCAL ROLE`` to the department's role, inside a savepoint that is rolled back once the rows
are fetched: PostgreSQL decides what the department sees (the view's columns, row-level security on
enrolments, the current release), and the rest of the transaction runs as the API's own user again.

The department's role is the one ``hub grants apply`` gave ``USAGE`` on the department's schema (a
role carrying the hub's marker comment, named ``<prefix>dept_<department>``) and that the connected user
may ``SET ROLE`` to. It is looked up in the database, so any role prefix works without a setting. When
the views or the role are missing, :class:`DepartmentViewsMissing` says to run ``hub grants apply``;
nothing is then read from the tables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from warehouse import tables

log = logging.getLogger(__name__)
SCHEMA_PREFIX = "dept_"  # as in warehouse.grants (which imports this module's readers' views)
ROLE_MARKER = "resident data hub (role prefix "


class DepartmentViewsMissing(RuntimeError):
    """The department's views or role are not in the database: the grants were not applied."""


def ping(conn: sa.Connection) -> None:
    """Raises when the warehouse does not answer."""
    conn.execute(sa.select(1))


def current_release_no(conn: sa.Connection) -> int | None:
    """The number of the release in force, or None before the first publish."""
    return conn.execute(sa.select(tables.publish_current_release.c.release_no)).scalar()


def department_role(conn: sa.Connection, department: str) -> str:
    """The role whose members read ``dept_<department>``'s views, which the connected user may become."""
    schema = SCHEMA_PREFIX + department
    roles = conn.execute(sa.text(
        "SELECT r.rolname FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a"
        " JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE n.nspname = :schema AND a.privilege_type = 'USAGE' AND right(r.rolname, length(:suffix)) = :suffix"
        " AND left(shobj_description(r.oid, 'pg_authid'), length(:marker)) = :marker"
        " AND pg_has_role(current_user, r.oid, 'MEMBER')"
        " AND (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'v'"
        "      AND c.relname IN ('master_person', 'enrolment')) = 2 ORDER BY 1"),
        {"schema": schema, "suffix": f"dept_{department}", "marker": ROLE_MARKER}).scalars().all()
    if len(roles) != 1:
        problem = ("no department role the API's database user may act as" if not roles
                   else f"more than one role prefix ({', '.join(roles)}); use one prefix per database")
        message = (f"department {department!r}: the views {schema}.master_person / {schema}.enrolment or their"
                   f" role are missing ({problem}); run `hub grants apply` on the warehouse, then retry")
        log.error("read API: %s", message)
        raise DepartmentViewsMissing(message)
    return roles[0]


def _as_department(conn: sa.Connection, role: str, query) -> list[dict]:
    """Run ``query`` as the department's ``role`` in a savepoint rolled back after the fetch."""
    savepoint = conn.begin_nested()
    try:
        conn.exec_driver_sql(f"SET LOCAL ROLE {conn.dialect.identifier_preparer.quote(role)}")
        return [dict(r) for r in conn.execute(query).mappings().all()]
    finally:
        savepoint.rollback()  # back to the API's own user


def _view(conn: sa.Connection, department: str, name: str, wanted: Iterable[str]) -> sa.TableClause:
    """The department's view with the ``wanted`` columns, which it must show (the grants follow the
    sharing configuration: a field the configuration gives but the view lacks means they are stale)."""
    schema = SCHEMA_PREFIX + department
    have = set(conn.execute(sa.text(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = :v"
        " AND a.attnum > 0 AND NOT a.attisdropped"), {"s": schema, "v": name}).scalars())
    missing = [c for c in wanted if c not in have]
    if missing:
        message = (f"department {department!r}: the view {schema}.{name} does not show {', '.join(missing)},"
                   " which the sharing configuration gives it; run `hub grants apply` to bring the views in line")
        log.error("read API: %s", message)
        raise DepartmentViewsMissing(message)
    return sa.table(name, *(sa.column(c) for c in wanted), schema=schema)


def _persons(conn: sa.Connection, fields: Iterable[str], department: str | None, column: str,
             values: Sequence[str]) -> list[dict]:
    names = list(dict.fromkeys(("master_id", *fields)))
    if department is None:
        person = tables.publish_master_person_current
        # a KeyError for anything that is not a published column: only those may be read
        columns = [person.c[c] for c in names]
        query = sa.select(*columns).where(person.c[column].in_(list(values))).order_by(person.c.master_id)
        return [dict(r) for r in conn.execute(query).mappings().all()]
    role = department_role(conn, department)
    view = _view(conn, department, "master_person", dict.fromkeys((*names, column)))
    query = (sa.select(*(view.c[c] for c in names)).where(view.c[column].in_(list(values)))
             .order_by(view.c.master_id))
    return _as_department(conn, role, query)


def persons_by_master_id(conn: sa.Connection, master_id: str, fields: Sequence[str], *,
                         department: str | None = None) -> list[dict]:
    """The current release's person with this master id (at most one), cut to ``fields`` and master_id,
    as ``department`` may see it."""
    return _persons(conn, fields, department, "master_id", [master_id])


def persons_by_id_numbers(conn: sa.Connection, id_numbers: Sequence[str], fields: Sequence[str], *,
                          department: str | None = None) -> list[dict]:
    """The current release's persons holding any of these (standardized) ID numbers, by master id, as
    ``department`` may see them."""
    return _persons(conn, fields, department, "id_number", id_numbers)


def enrolments(conn: sa.Connection, master_ids: Sequence[str], *,
               department: str | None = None) -> dict[str, list[dict]]:
    """master id → its enrolments in the current release (as ``department`` may see them when given:
    its own programmes' only when its sharing says ``enrolments: own``)."""
    if not master_ids:
        return {}
    cols = ("master_id", "source", "source_record_id", "department", "program", "status_raw")
    role = department_role(conn, department) if department is not None else None
    e = tables.publish_enrolment_current if role is None else _view(conn, department, "enrolment", cols)
    query = (sa.select(*(e.c[c] for c in cols))
             .where(e.c.master_id.in_(list(master_ids))).order_by(e.c.source, e.c.source_record_id))
    rows = [dict(r) for r in conn.execute(query).mappings()] if role is None else _as_department(conn, role, query)
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.pop("master_id"), []).append(r)
    return out
