"""The read API's own database user: a login role that is not a superuser.

``apply_grants`` creates or refreshes it (``hub grants apply``); ``hub serve`` only connects as it
(:mod:`hub.api_db`). Its name is ``<prefix>api`` (``hub_api`` by default); it is ``LOGIN NOSUPERUSER
NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS NOINHERIT`` and holds exactly what the API itself needs:

* ``CONNECT`` and ``TEMPORARY`` on the database (steward decisions stage record keys in temporary tables);
* ``audit.api_key``: read, and update only ``blocked_at`` / ``blocked_reason`` (blocking a key);
* ``audit.access_log`` (append: the trigger refuses changes), ``audit.api_quota`` (count),
  ``audit.access_alert`` (raise): read and insert, quotas also update;
* ``publish.current_release``: read ``release_no``; ``publish.release``: read (the releases' figures and
  manifests, no personal data); nothing else in ``publish``;
* the steward routes: read ``mpi`` and ``std.resident``, insert ``mpi.decision``, update
  ``mpi.review_pair``; the sequences behind those tables' ids;
* the workbench: its sessions (``audit.workbench_session``: read, insert, end), the findings inbox (read
  ``audit.finding`` and update only its lifecycle columns, read and append ``audit.finding_event``), the
  quality pages (read the validation history and finding counts), and ``audit.export_log`` (append).

It is a member of every department role (``<prefix>dept_<department>``), and being ``NOINHERIT`` it
holds none of their privileges until a request does ``SET LOCAL ROLE`` to the caller's department:
persons and enrolments are read only through the department's views, as the department.

Its comment starts ``resident data hub API (role prefix hub_):``, not the department roles' marker,
so the department bookkeeping of :mod:`warehouse.grants` never takes it for a stale department role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlalchemy as sa

API_MARKER = "resident data hub API"
ATTRIBUTES = ("LOGIN", "NOSUPERUSER", "NOCREATEROLE", "NOCREATEDB", "NOREPLICATION", "NOBYPASSRLS", "NOINHERIT")

#: (schema, table, privilege, columns or None)
TABLE_PRIVILEGES = (
    ("audit", "api_key", "SELECT", None),
    ("audit", "api_key", "UPDATE", ("blocked_at", "blocked_reason")),
    ("audit", "access_log", "SELECT", None),
    ("audit", "access_log", "INSERT", None),
    ("audit", "api_quota", "SELECT", None),
    ("audit", "api_quota", "INSERT", None),
    ("audit", "api_quota", "UPDATE", None),
    ("audit", "access_alert", "SELECT", None),
    ("audit", "access_alert", "INSERT", None),
    ("publish", "current_release", "SELECT", ("release_no",)),
    ("publish", "release", "SELECT", None),
    ("publish", "change_event", "SELECT", None),  # the change feed (GET /v1/changes reads the caller's)
    ("std", "resident", "SELECT", None),
    ("mpi", "decision", "INSERT", None),
    ("mpi", "review_pair", "UPDATE", None),
    # the workbench: its sessions, the auditors' inbox, the quality pages, exports from its pages
    ("audit", "workbench_session", "SELECT", None),
    ("audit", "workbench_session", "INSERT", None),
    ("audit", "workbench_session", "UPDATE", ("ended_at",)),
    ("audit", "finding", "SELECT", None),
    ("audit", "finding", "UPDATE", ("status", "assigned_to", "due_at", "acknowledged_at", "assigned_at", "closed_at",
                                    "close_reason", "closed_by")),
    ("audit", "finding_event", "SELECT", None),
    ("audit", "finding_event", "INSERT", None),
    ("audit", "finding_count", "SELECT", None),
    ("audit", "validation_run", "SELECT", None),
    ("audit", "validation_result", "SELECT", None),
    ("audit", "validation_suite", "SELECT", None),
    ("audit", "publish_attempt", "SELECT", None),
    ("audit", "export_log", "INSERT", None),
)
SCHEMAS = ("audit", "publish", "mpi", "std")
SEQUENCES_OF = ("audit.access_log", "audit.access_alert", "mpi.decision", "mpi.review_pair", "audit.finding_event",
                "audit.export_log")


def api_role(prefix: str) -> str:
    return f"{prefix}api"


def _comment(prefix: str) -> str:
    return (f"{API_MARKER} (role prefix {prefix}): the login user of the read API; member of the department roles,"
            " it reads persons only through their views")


def set_role_privilege(conn: sa.Connection) -> str:
    """The ``pg_has_role`` privilege that lets the current user ``SET ROLE``: from PostgreSQL 16 a role's
    creator holds it WITH ADMIN only, which is membership without SET."""
    return "SET" if conn.execute(sa.text("SELECT current_setting('server_version_num')::int >= 160000")
                                 ).scalar_one() else "MEMBER"


def ensure_api_role(conn: sa.Connection, prefix: str, database: str, department_roles: Iterable[str],
                    run: Callable[[str], None]) -> str:
    """Create or refresh the API's role: attributes, comment, memberships and privileges (only what is
    missing is granted, so a second run issues nothing). Returns the role's name."""
    role = api_role(prefix)
    q = conn.dialect.identifier_preparer.quote
    row = conn.execute(sa.text(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolinherit,"
        " shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if row is None:
        run(f"CREATE ROLE {q(role)} {' '.join(ATTRIBUTES)}")
    else:
        # only the attributes that differ: from PostgreSQL 16, naming REPLICATION or BYPASSRLS at all
        # needs that attribute, which the warehouse's role (CREATEROLE, not a superuser) lacks
        wrong = [a for a, ok in zip(ATTRIBUTES, (row.rolcanlogin, not row.rolsuper, not row.rolcreaterole,
                                                 not row.rolcreatedb, not row.rolreplication, not row.rolbypassrls,
                                                 not row.rolinherit)) if not ok]
        if wrong:
            run(f"ALTER ROLE {q(role)} {' '.join(wrong)}")
    if row is None or row.comment != _comment(prefix):
        run(f"COMMENT ON ROLE {q(role)} IS '{_comment(prefix)}'")
    _sync_members(conn, role, set(department_roles), prefix, run)
    _grant_missing(conn, role, database, run)
    if not conn.execute(sa.text("SELECT rolsuper OR pg_has_role(current_user, :r, :o) FROM pg_roles"
                                " WHERE rolname = current_user"), {"r": role, "o": set_role_privilege(conn)}).scalar():
        # the warehouse's user (not a superuser) may then serve as the API's role: SET ROLE in hub.api_db
        run(f"GRANT {q(role)} TO CURRENT_USER")
    return role


def _sync_members(conn: sa.Connection, role: str, wanted: set[str], prefix: str,
                  run: Callable[[str], None]) -> None:
    """Member of exactly the department roles of this prefix (and of no other role)."""
    q = conn.dialect.identifier_preparer.quote
    have = set(conn.execute(sa.text(
        "SELECT g.rolname FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid"
        " JOIN pg_roles m ON m.oid = am.member WHERE m.rolname = :r"), {"r": role}).scalars())
    for group in sorted(have - wanted):
        run(f"REVOKE {q(group)} FROM {q(role)}")
    for group in sorted(wanted - have):
        run(f"GRANT {q(group)} TO {q(role)}")


def _grant_missing(conn: sa.Connection, role: str, database: str, run: Callable[[str], None]) -> None:
    q = conn.dialect.identifier_preparer.quote

    def has(sql: str, **params) -> bool:
        return bool(conn.execute(sa.text(sql), {"r": role, **params}).scalar())

    for priv in ("CONNECT", "TEMPORARY"):
        if not has("SELECT has_database_privilege(:r, current_database(), :p)", p=priv):
            run(f"GRANT {priv} ON DATABASE {q(database)} TO {q(role)}")
    for schema in SCHEMAS:
        if not has("SELECT has_schema_privilege(:r, :s, 'USAGE')", s=schema):
            run(f"GRANT USAGE ON SCHEMA {q(schema)} TO {q(role)}")
    reads = [("mpi", t) for t in conn.execute(sa.text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'mpi' AND c.relkind IN ('r', 'v', 'p') ORDER BY 1")).scalars()]
    wanted = [*TABLE_PRIVILEGES, *((s, t, "SELECT", None) for s, t in reads)]
    for schema, table, priv, columns in wanted:
        name = f"{q(schema)}.{q(table)}"
        if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"{schema}.{table}"}).scalar() is None:
            continue  # an older warehouse: re-apply the grants after the migrations
        if columns is None:
            if not has("SELECT has_table_privilege(:r, :t, :p)", t=name, p=priv):
                run(f"GRANT {priv} ON TABLE {name} TO {q(role)}")
            continue
        missing = [c for c in columns if not has("SELECT has_column_privilege(:r, :t, :c, :p)", t=name, c=c, p=priv)]
        if missing:
            run(f"GRANT {priv} ({', '.join(q(c) for c in missing)}) ON TABLE {name} TO {q(role)}")
    for seq in conn.execute(sa.text(
            "SELECT DISTINCT s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid"
            " WHERE s.relkind = 'S' AND d.refobjid = ANY(SELECT to_regclass(t) FROM unnest(CAST(:t AS text[])) t)"
            " ORDER BY 1"), {"t": list(SEQUENCES_OF)}).scalars():
        if not has("SELECT has_sequence_privilege(:r, :s, 'USAGE')", s=seq):
            run(f"GRANT USAGE ON SEQUENCE {seq} TO {q(role)}")


def drop_api_role(conn: sa.Connection, prefix: str, run: Callable[[str], None], out: list[str]) -> bool:
    """Revoke the API role's privileges in this database and drop it (recorded in ``out``); False when
    it is kept because another database still grants it something."""
    role = api_role(prefix)
    if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar() is None:
        return True
    q = conn.dialect.identifier_preparer.quote
    if not conn.execute(sa.text(
            "SELECT left(shobj_description(oid, 'pg_authid'), length(:m)) = :m FROM pg_roles WHERE rolname = :r"),
            {"r": role, "m": f"{API_MARKER} (role prefix {prefix}):"}).scalar():
        return False  # not ours: leave it alone
    database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    run(f"REVOKE ALL ON DATABASE {q(database)} FROM {q(role)}")
    for schema in SCHEMAS:
        if conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).scalar():
            run(f"REVOKE ALL ON ALL TABLES IN SCHEMA {q(schema)} FROM {q(role)}")
            run(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {q(schema)} FROM {q(role)}")
            run(f"REVOKE ALL ON SCHEMA {q(schema)} FROM {q(role)}")
    try:
        with conn.begin_nested():
            conn.execution_options(no_parameters=True).exec_driver_sql(f"DROP ROLE {q(role)}")
        out.append(f"DROP ROLE {q(role)}")
        return True
    except sa.exc.DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) != "2BP01":
            raise
        return False
