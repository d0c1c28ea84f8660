"""Department access enforced by PostgreSQL itself: roles, per-department views, column privileges, RLS.

``apply_grants`` brings the database in line with the sharing configuration (``warehouse/sharing.yaml``)
and is idempotent: a second run with the same configuration changes nothing; a run after a change
revokes what is no longer allowed. Everything runs in the caller's transaction.

Roles (cluster-wide; named from a prefix, ``hub_`` by default; all ``NOLOGIN``):

* ``hub_dept_<department>``: the department's group role. Grant it to the department's login users.
  It holds ``CONNECT`` on the database, ``USAGE`` on schema ``dept_<department>`` and column
  ``SELECT`` on that schema's three views, nothing else: no privilege on ``publish``, ``raw``, ``std``,
  ``mpi`` or ``audit`` objects.
* ``hub_owner_<department>``: owns schema ``dept_<department>`` and its views. Never granted to anyone.
  A view reads its tables with its owner's privileges and under its owner's row-level security
  policies, so this role holds exactly what the department may read: column ``SELECT`` on
  ``publish.master_person_current`` (the visible fields), on ``publish.enrolment`` and on
  ``publish.current_release (release_no)``, and the RLS policy ``hub_enrolment_<department>`` on
  ``publish.enrolment`` is written for it.
* ``hub_auditor``: ``SELECT`` on every table and view in ``publish`` and ``audit`` (and a policy that
  lets it see every enrolment) except ``publish.webhook.secret`` (the webhooks' signing secrets: only the
  hub's own user, which delivers the events, reads them); nothing in ``raw``, ``std``, ``mpi``.

Per department (schema ``dept_<department>``, per database):

* view ``master_person``: ``release_no`` and the fields whose class is 无条件 or 有条件, read from
  ``publish.master_person_current``, so it follows the current release. A 不予共享 field is not in the
  view, and the owner role has no privilege on that column of ``publish.master_person_current``
  either: changing the view alone could not reveal it. Column comments name each field's class.
  With ``enrolments: own``, the fields computed over every department's records are cut to the
  department's own, as the read API answers them: ``sources`` lists only its own sources (those the
  release's enrolments file under it), ``record_count`` counts only the master's records from those
  sources, and ``conflicts`` (disagreements with other departments' records) is always NULL; the
  others would tell which programmes a person is in (:mod:`warehouse.grants_views`). The owner role
  then reads ``master_id`` (to count) and not ``conflicts``.
* view ``master_id_redirect``: ``retired_id`` → ``survivor_id`` for the master ids an earlier release
  published that the current release redirects (merged away), empty when ``master_id`` is not shared
  (:mod:`warehouse.grants_views`); its owner reads ``release_no`` and ``ran_with`` of ``publish.release``.
* view ``enrolment``: ``publish.enrolment`` joined with ``publish.current_release`` (the definition
  of ``publish.enrolment_current``, which cannot be used here: it belongs to the table owner, and
  row-level security is skipped for a table's owner, so it would show every row). ``master_id`` is
  in it only when the department may see ``master_id``.

Every view is ``security_barrier`` (so are ``publish.master_person_current`` and
``publish.enrolment_current``): a function in a query's ``WHERE``, however cheap, runs only on rows the
view lets through, never on a withdrawn release's or another department's. PUBLIC loses ``CONNECT``
and ``TEMPORARY`` on the database and ``CREATE`` on schema ``public``, so no department user can create
a function at all; the hub's roles get ``CONNECT`` explicitly (the user applying the grants keeps
``CONNECT`` and ``TEMPORARY`` unless it owns the database; other login users need them granted).
The read API's login role ``<prefix>api`` is created and refreshed here too (:mod:`warehouse.api_role`).

Row-level security is enabled on ``publish.enrolment`` (not forced: the hub's own user, which owns
the table, and superusers are not subject to it). Roles without a policy see no rows there. The
policy of a department with ``enrolments: own`` is ``department = '<department>'``, of one with
``all`` is ``true``; both are ``FOR SELECT TO hub_owner_<department>``.

The hub's roles carry a comment naming their prefix (``resident data hub (role prefix hub_): ...``):
that, not the name alone, is how a later run recognises the roles of departments it must remove, so
that ``hub_`` never takes another prefix's roles (``hub_t1234_dept_x``) for its own. Schemas and
policies are per database and named without the prefix's help: use one prefix per database.

Direct SQL through the views has no purpose: the views show the department's 有条件 fields (their
column comments say so); the purpose catalogue applies to the read API, where a purpose is required and
logged. Grant a department role only to users whose whole use of those fields is approved.

Every master of the current release is in each department's ``master_person`` view, also one with no
record of the department's own sources: being in the index at all can tell that a person is in some
department's programme. The view does not drop such masters, because the read API's search and batch
check (比对) read through it and a department must be able to check a person not (yet) on its rolls.

``apply_grants`` must run as a superuser or as the owner of the warehouse tables with ``CREATEROLE``
(it then makes itself a member of the owner roles, which ``ALTER ... OWNER`` needs). Re-run it after a
migration that adds ``publish``/``audit`` tables. A migration that drops ``publish.master_person_current``
or ``publish.enrolment`` must drop the department schemas first (``drop_grants``), then re-apply.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from warehouse.api_role import drop_api_role, ensure_api_role, set_role_privilege
from warehouse.grants_views import (  # noqa: F401 (ENROLMENT_COLUMNS, GrantsError: part of this module's API)
    ENROLMENT_COLUMNS,
    REDIRECT_COLUMNS,
    DepartmentAccess,
    GrantsError,
    enrolment_sql,
    master_id_redirect_sql,
    master_person_notes,
    master_person_sql,
    owner_columns,
    policy_qual,
)
from warehouse.grants_views import sql_literal as _lit
from warehouse.sharing import CONDITIONAL, UNCONDITIONAL, DepartmentSharing

ROLE_PREFIX = "hub_"
SCHEMA_PREFIX = "dept_"
MARKER = "resident data hub"  # comments on the hub's roles and views start with this
GRANTS_LOCK = 20261124
MAX_NAME = 63  # PostgreSQL truncates longer identifiers
ENROLMENT_TABLE = ("publish", "enrolment")
_READABLE_KINDS = ("r", "v", "m", "p", "f")
# columns of publish/audit the auditors may not read: only the hub's own user (the tables' owner) reads a
# webhook's signing secret (delivery runs as that user); anyone holding it could forge the hub's events
AUDITOR_WITHHELD = {("publish", "webhook"): frozenset({"secret"})}
_CLASS_NOTE = {
    UNCONDITIONAL: "无条件 unconditional sharing",
    CONDITIONAL: "有条件 conditional sharing: use only for a declared purpose",
}


@dataclass
class GrantsReport:
    database: str
    auditor: str
    departments: tuple[DepartmentAccess, ...]
    statements: list[str] = field(default_factory=list)  # what was executed, in order (no personal data)
    removed_departments: list[str] = field(default_factory=list)
    kept_roles: list[str] = field(default_factory=list)  # stale roles still used in another database
    api_role: str = ""  # the read API's login role

    @property
    def changed(self) -> bool:
        return bool(self.statements)

    def summary(self) -> list[str]:
        """One line per role set, for the CLI."""
        lines = [f"{d.department}: users join {d.role}; schema {d.schema} (views master_person, enrolment,"
                 " master_id_redirect);"
                 f" {len(d.fields)} fields, {len(d.conditional)} of them 有条件;"
                 f" enrolments {'own' if d.own_enrolments_only else 'all'}" for d in self.departments]
        lines.append(f"auditors: users join {self.auditor}; read publish.* and audit.*")
        lines.append(f"read API: connects as {self.api_role} (not a superuser), reads as the caller's department")
        lines += [f"removed department {d}" for d in self.removed_departments]
        lines += [f"kept role {r}: another database still depends on it" for r in self.kept_roles]
        return lines


def department_access(sharing: Mapping[str, DepartmentSharing], *,
                      role_prefix: str = ROLE_PREFIX) -> tuple[DepartmentAccess, ...]:
    """The roles, schema and fields of every configured department (no database needed)."""
    _check_prefix(role_prefix)
    out = []
    for name in sorted(sharing):
        s = sharing[name]
        if not name.isidentifier() or name != name.lower():
            raise GrantsError(f"department {name!r}: a department key is lower-case letters, digits and _")
        access = DepartmentAccess(
            department=name, title=s.title, role=f"{role_prefix}dept_{name}", owner=f"{role_prefix}owner_{name}",
            schema=f"{SCHEMA_PREFIX}{name}", policy=f"{role_prefix}enrolment_{name}", fields=s.visible(),
            conditional=s.conditional(), own_enrolments_only=s.own_enrolments_only)
        for ident in (access.role, access.owner, access.schema, access.policy):
            if len(ident.encode()) > MAX_NAME:
                raise GrantsError(f"department {name!r}: the name {ident!r} is longer than {MAX_NAME} bytes")
        out.append(access)
    return tuple(out)


def apply_grants(conn: sa.Connection, sharing: Mapping[str, DepartmentSharing], *,
                 role_prefix: str = ROLE_PREFIX, database: str | None = None) -> GrantsReport:
    """Create or update the department roles, schemas, views, column privileges and RLS policies.

    Runs in the caller's transaction. Departments no longer configured lose their schema and
    privileges in this database, and their roles are dropped unless another database still uses them.
    ``database`` (default: the connection's) must be the connection's database; it is where ``CONNECT``
    is granted.
    """
    departments = department_access(sharing, role_prefix=role_prefix)
    current_db = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    if database is not None and database != current_db:
        raise GrantsError(f"grants are applied in the connection's database {current_db!r}, not {database!r}")
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": GRANTS_LOCK})
    if conn.execute(sa.text("SELECT to_regclass('publish.enrolment')")).scalar() is None:
        raise GrantsError("the warehouse is not migrated (no publish.enrolment): run the migrations first")
    g = _Grants(conn, role_prefix, current_db)
    report = GrantsReport(current_db, g.auditor, departments)
    g.out = report.statements

    wanted_roles = {g.auditor: "auditors: read publish and audit (no raw, std, mpi)"}
    for d in departments:
        wanted_roles[d.role] = (f"{d.title} (department {d.department}): members read the views in schema {d.schema}")
        wanted_roles[d.owner] = (f"owns schema {d.schema} and its views; row-level security on publish.enrolment"
                                 f" is written for it; never grant it to anyone")
    g.ensure_roles(wanted_roles, owners={d.owner for d in departments})

    stale = g.stale_roles(set(wanted_roles))
    report.removed_departments = sorted({_department_of(r, role_prefix) for r in stale} - {None})
    g.sync_policies(departments, auditor=True)  # before the stale roles go: their policies are dropped by name
    report.kept_roles = g.drop_roles(stale)

    for d in departments:
        g.ensure_schema(d)
        g.ensure_view(d, "master_person", master_person_sql(g.q, d), master_person_notes(
            d, {f: _CLASS_NOTE[sharing[d.department].classes[f]] for f in d.fields}),
            f"{d.title}: master persons of the current release, the fields shared with the department")
        g.ensure_view(d, "enrolment", enrolment_sql(g.q, d), {},
                      f"{d.title}: programme enrolments of the current release"
                      + (" (its own programmes only, by row-level security)" if d.own_enrolments_only else ""))
        g.ensure_view(d, "master_id_redirect", master_id_redirect_sql(g.q, d), {
            "retired_id": "a master id an earlier release published, retired by a merge",
            "survivor_id": "the master id of the current release it was merged into (a chain resolves to the last)",
            "release_no": "the release these redirects belong to (always the current release)"},
            f"{d.title}: retired master ids and the ids they now are"
            + ("" if "master_id" in d.fields else " (empty: master ids are not shared with the department)"))
    g.ensure_row_security()
    wanted = _wanted_privileges(g, departments, set(wanted_roles) | set(report.kept_roles))
    g.sync_privileges(wanted)
    g.sync_owner_members([d.owner for d in departments])
    g.verify(wanted)
    g.harden_database()
    report.api_role = ensure_api_role(conn, role_prefix, current_db, [d.role for d in departments], g.run)
    return report


def drop_grants(conn: sa.Connection, *, role_prefix: str = ROLE_PREFIX) -> list[str]:
    """Remove what ``apply_grants`` made under ``role_prefix``: department schemas, policies, privileges
    and roles (caller's transaction). Roles still holding privileges in another database are kept
    (their privileges here are gone). Row-level security stays enabled on ``publish.enrolment``.
    Returns the statements executed."""
    _check_prefix(role_prefix)
    current_db = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": GRANTS_LOCK})
    g = _Grants(conn, role_prefix, current_db)
    g.out = []
    drop_api_role(conn, role_prefix, g.run, g.out)
    if conn.execute(sa.text("SELECT to_regclass('publish.enrolment')")).scalar() is not None:
        g.sync_policies((), auditor=False)
    g.drop_roles(g.stale_roles(set()))
    return g.out


def managed_roles(conn: sa.Connection, *, role_prefix: str = ROLE_PREFIX) -> list[str]:
    """The roles ``apply_grants`` made under ``role_prefix`` that exist on the server.

    A role is the hub's when its comment carries the marker with this very prefix: with roles
    cluster-wide, ``hub_`` must not take ``hub_t1234_dept_x`` (another prefix's role) for its own."""
    _check_prefix(role_prefix)
    marker = _role_marker(role_prefix)
    return conn.execute(sa.text(
        "SELECT rolname FROM pg_roles WHERE left(shobj_description(oid, 'pg_authid'), length(:m)) = :m"
        " ORDER BY 1"), {"m": marker}).scalars().all()


# --------------------------------------------------------------------------------------------------


def _check_prefix(prefix: str) -> None:
    if not prefix or not prefix.isidentifier() or prefix != prefix.lower() or not prefix.isascii():
        raise GrantsError(f"role prefix {prefix!r}: use lower-case ASCII letters, digits and _ (e.g. 'hub_')")


def _role_marker(prefix: str) -> str:
    return f"{MARKER} (role prefix {prefix}):"


def _department_of(role: str, prefix: str) -> str | None:
    for stem in ("dept_", "owner_"):
        if role.startswith(prefix + stem):
            return role[len(prefix + stem):]
    return None


# (role, schema, relation, column or None, privilege)
Privilege = tuple[str, str, str, str | None, str]


def _wanted_privileges(g: _Grants, departments: Iterable[DepartmentAccess], managed: set[str]) -> dict:
    """Everything the managed roles should hold in this database; anything else of theirs is revoked."""
    rel: set[Privilege] = set()
    schema: set[tuple[str, str, str]] = set()
    db: set[tuple[str, str]] = {(g.auditor, "CONNECT")}
    for d in departments:
        db.add((d.role, "CONNECT"))
        schema.add((d.role, d.schema, "USAGE"))
        for view, cols in (("master_person", ("release_no", *d.fields)), ("enrolment", d.enrolment_columns),
                           ("master_id_redirect", REDIRECT_COLUMNS)):
            rel |= {(d.role, d.schema, view, c, "SELECT") for c in cols}
        rel |= {(d.owner, "publish", r, c, "SELECT") for r, cols in owner_columns(d).items() for c in cols}
    schema |= {(g.auditor, s, "USAGE") for s in ("publish", "audit")}
    for s, r in g.conn.execute(sa.text(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('publish', 'audit') AND c.relkind = ANY(:k)"), {"k": list(_READABLE_KINDS)}):
        if (s, r) not in AUDITOR_WITHHELD:
            rel.add((g.auditor, s, r, None, "SELECT"))
            continue
        columns = g.conn.execute(sa.text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0"
            " AND NOT attisdropped"), {"t": g.qn(s, r)}).scalars()
        rel |= {(g.auditor, s, r, c, "SELECT") for c in columns if c not in AUDITOR_WITHHELD[(s, r)]}
    return {"rel": rel, "schema": schema, "db": db, "roles": managed}


class _Grants:
    """Reads the catalogs and issues the statements that close the gap to what is wanted."""

    def __init__(self, conn: sa.Connection, prefix: str, database: str):
        self.conn = conn
        self.prefix = prefix
        self.database = database
        self.auditor = f"{prefix}auditor"
        self.q = conn.dialect.identifier_preparer.quote
        self.out: list[str] = []
        self.superuser = conn.execute(sa.text(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
        self.set_role_privilege = set_role_privilege(conn)

    def run(self, statement: str) -> None:
        self.out.append(statement)
        self.conn.execution_options(no_parameters=True).exec_driver_sql(statement)

    def qn(self, schema: str, name: str) -> str:
        return f"{self.q(schema)}.{self.q(name)}"

    # roles -----------------------------------------------------------------------------------------

    def ensure_roles(self, wanted: Mapping[str, str], owners: set[str]) -> None:
        rows = {r.rolname: r for r in self.conn.execute(sa.text(
            "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication,"
            " shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = ANY(:r)"),
            {"r": list(wanted)})}
        for role, purpose in wanted.items():
            row = rows.get(role)
            if row is None:
                self.run(f"CREATE ROLE {self.q(role)} NOLOGIN")
            elif any((row.rolcanlogin, row.rolsuper, row.rolbypassrls, row.rolcreaterole, row.rolcreatedb,
                      row.rolreplication)):
                # a group role that could log in or bypass row-level security would defeat the design
                self.run(f"ALTER ROLE {self.q(role)} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB"
                         " NOREPLICATION")
            comment = f"{_role_marker(self.prefix)} {purpose}"
            if row is None or row.comment != comment:
                self.run(f"COMMENT ON ROLE {self.q(role)} IS {_lit(comment)}")
            if not self.superuser and role in owners:
                # ALTER ... OWNER TO needs the right to SET ROLE to the new owner
                option = self.set_role_privilege
                if not self.conn.execute(sa.text("SELECT pg_has_role(current_user, :r, :o)"),
                                         {"r": role, "o": option}).scalar():
                    self.run(f"GRANT {self.q(role)} TO CURRENT_USER")

    def stale_roles(self, wanted: set[str]) -> list[str]:
        """Managed roles (prefix and marker) of departments that are no longer configured."""
        return [r for r in managed_roles(self.conn, role_prefix=self.prefix) if r not in wanted]

    def drop_roles(self, roles: list[str]) -> list[str]:
        """Drop the roles' schemas and revoke their privileges here, then drop the roles; returns those
        kept because something else (another database's privileges, say) still depends on them.

        Not DROP OWNED: that needs the privileges of every role named, which a non-superuser applying
        the grants does not have for the department roles."""
        if not roles:
            return []
        for schema in self.conn.execute(sa.text(
                "SELECT nspname FROM pg_namespace WHERE pg_get_userbyid(nspowner) = ANY(:r) ORDER BY 1"),
                {"r": roles}).scalars():
            self.run(f"DROP SCHEMA {self.q(schema)} CASCADE")
        self.sync_privileges({"rel": set(), "schema": set(), "db": set(), "roles": set(roles)})
        kept = []
        for role in roles:
            try:
                with self.conn.begin_nested():
                    self.conn.execution_options(no_parameters=True).exec_driver_sql(f"DROP ROLE {self.q(role)}")
                self.out.append(f"DROP ROLE {self.q(role)}")
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) != "2BP01":  # dependent_objects_still_exist
                    raise
                kept.append(role)
        return kept

    def sync_owner_members(self, owners: list[str]) -> None:
        """Nobody may act as an owner role (except the user applying the grants, when not a superuser)."""
        for owner, member in self.conn.execute(sa.text(
                "SELECT o.rolname, m.rolname FROM pg_auth_members am JOIN pg_roles o ON o.oid = am.roleid"
                " JOIN pg_roles m ON m.oid = am.member WHERE o.rolname = ANY(:o) AND m.rolname <> current_user"
                " ORDER BY 1, 2"), {"o": owners}).all():
            self.run(f"REVOKE {self.q(owner)} FROM {self.q(member)}")

    # schemas and views -----------------------------------------------------------------------------

    def ensure_schema(self, d: DepartmentAccess) -> None:
        owner = self.conn.execute(sa.text(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :s"), {"s": d.schema}).scalar()
        if owner is None:
            self.run(f"CREATE SCHEMA {self.q(d.schema)} AUTHORIZATION {self.q(d.owner)}")
        elif owner != d.owner:
            self.run(f"ALTER SCHEMA {self.q(d.schema)} OWNER TO {self.q(d.owner)}")

    def ensure_view(self, d: DepartmentAccess, view: str, sql: str, column_notes: Mapping[str, str],
                    title: str) -> None:
        """(Re)create the view when its definition, columns or owner differ from what is wanted.

        A view is dropped and created rather than replaced: CREATE OR REPLACE cannot drop a column,
        and a field that stopped being shared must disappear. The transaction makes the switch atomic.
        """
        fingerprint = hashlib.sha256("\n".join(
            [sql, d.owner, *(f"{c}={n}" for c, n in column_notes.items()), title, "security_barrier"]
        ).encode()).hexdigest()[:16]
        comment = f"{MARKER}: {title} [definition {fingerprint}]"
        row = self.conn.execute(sa.text(
            "SELECT c.relkind, pg_get_userbyid(c.relowner) AS owner, obj_description(c.oid, 'pg_class') AS comment,"
            " coalesce('security_barrier=true' = ANY(c.reloptions), false) AS barrier,"
            " ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0"
            "       AND NOT attisdropped ORDER BY attnum) AS columns"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = :v"),
            {"s": d.schema, "v": view}).first()
        name = self.qn(d.schema, view)
        if row is not None:
            if row.relkind != "v":
                raise GrantsError(f"{d.schema}.{view} exists and is not a view; remove it and apply again")
            if row.owner == d.owner and row.comment == comment and row.barrier:
                return
            self.run(f"DROP VIEW {name}")
        # security_barrier: the view's conditions (and the owner's row security) are applied before any
        # function of the caller's query, so a leaky function cannot see rows the view filters out
        self.run(f"CREATE VIEW {name} WITH (security_barrier) AS {sql}")
        self.run(f"ALTER VIEW {name} OWNER TO {self.q(d.owner)}")
        self.run(f"COMMENT ON VIEW {name} IS {_lit(comment)}")
        for column, note in column_notes.items():
            self.run(f"COMMENT ON COLUMN {name}.{self.q(column)} IS {_lit(note)}")

    def harden_database(self) -> None:
        """PUBLIC loses CONNECT, TEMPORARY and CREATE on schema public (the user applying keeps the first
        two); the publish views are security barriers (see the module's docstring)."""
        public = set(self.conn.execute(sa.text(
            "SELECT a.privilege_type FROM pg_database d"
            " CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            " WHERE d.datname = current_database() AND a.grantee = 0")).scalars())
        if not self.superuser and not self.conn.execute(sa.text(
                "SELECT datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_database"
                " WHERE datname = current_database()")).scalar_one():
            for priv in sorted({"CONNECT", "TEMPORARY"} & public):
                self.run(f"GRANT {priv} ON DATABASE {self.q(self.database)} TO CURRENT_USER")
        for priv in sorted({"CONNECT", "TEMPORARY"} & public):
            self.run(f"REVOKE {priv} ON DATABASE {self.q(self.database)} FROM PUBLIC")
        if self.conn.execute(sa.text("SELECT has_schema_privilege('public', oid, 'CREATE') FROM pg_namespace"
                                     " WHERE nspname = 'public'")).scalar():
            self.run("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for view in ("publish.master_person_current", "publish.enrolment_current"):
            if self.conn.execute(sa.text(
                    "SELECT NOT coalesce('security_barrier=true' = ANY(reloptions), false) FROM pg_class"
                    " WHERE oid = to_regclass(:v) AND relkind = 'v'"), {"v": view}).scalar():
                self.run(f"ALTER VIEW {view} SET (security_barrier = true)")

    # row-level security ----------------------------------------------------------------------------

    def ensure_row_security(self) -> None:
        if not self.conn.execute(sa.text(
                "SELECT relrowsecurity FROM pg_class WHERE oid = 'publish.enrolment'::regclass")).scalar_one():
            self.run("ALTER TABLE publish.enrolment ENABLE ROW LEVEL SECURITY")

    def sync_policies(self, departments: Iterable[DepartmentAccess], *, auditor: bool) -> None:
        """One SELECT policy per department (for its owner role) and one for the auditor; others under
        the prefix are dropped. A policy that differs in command, roles or condition is recreated."""
        wanted = {d.policy: (d.owner, policy_qual(d)) for d in departments}
        if auditor:
            wanted[f"{self.prefix}auditor"] = (self.auditor, "true")
        have = {r.polname: r for r in self.conn.execute(sa.text(
            "SELECT polname, polcmd, polpermissive, pg_get_expr(polqual, polrelid) AS qual,"
            " pg_get_expr(polwithcheck, polrelid) AS withcheck,"
            " ARRAY(SELECT coalesce(pg_get_userbyid(nullif(r, 0)), 'public') FROM unnest(polroles) r) AS roles"
            " FROM pg_policy WHERE polrelid = 'publish.enrolment'::regclass"
            " AND (polname = :a OR left(polname, length(:e)) = :e)"),
            {"a": f"{self.prefix}auditor", "e": f"{self.prefix}enrolment_"})}
        table = self.qn(*ENROLMENT_TABLE)
        for name in sorted(have):
            if name not in wanted:
                self.run(f"DROP POLICY {self.q(name)} ON {table}")
        for name, (role, qual) in sorted(wanted.items()):
            row = have.get(name)
            if row is not None:
                if (row.polcmd, row.polpermissive, list(row.roles), row.withcheck) == ("r", True, [role], None) \
                        and _same_qual(row.qual, qual):
                    continue
                self.run(f"DROP POLICY {self.q(name)} ON {table}")
            self.run(f"CREATE POLICY {self.q(name)} ON {table} AS PERMISSIVE FOR SELECT TO {self.q(role)}"
                     f" USING ({qual})")

    # privileges ------------------------------------------------------------------------------------

    def current_privileges(self, roles: set[str]) -> dict:
        """Privileges the roles hold in this database (as grantees; an owner's own rights left out)."""
        p = {"r": sorted(roles)}
        rel = {(r.role, r.nspname, r.relname, None, r.privilege_type, r.relkind, r.is_grantable)
               for r in self.conn.execute(sa.text(
                   "SELECT g.rolname AS role, n.nspname, c.relname, c.relkind, a.privilege_type, a.is_grantable"
                   " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles g ON g.oid = a.grantee"
                   " WHERE c.relacl IS NOT NULL AND a.grantee <> c.relowner AND g.rolname = ANY(:r)"), p)}
        rel |= {(r.role, r.nspname, r.relname, r.attname, r.privilege_type, r.relkind, r.is_grantable)
                for r in self.conn.execute(sa.text(
                    "SELECT g.rolname AS role, n.nspname, c.relname, c.relkind, t.attname, a.privilege_type,"
                    " a.is_grantable FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " CROSS JOIN LATERAL aclexplode(t.attacl) a JOIN pg_roles g ON g.oid = a.grantee"
                    " WHERE t.attacl IS NOT NULL AND NOT t.attisdropped AND a.grantee <> c.relowner"
                    " AND g.rolname = ANY(:r)"), p)}
        schema = {(r.role, r.nspname, r.privilege_type, r.is_grantable) for r in self.conn.execute(sa.text(
            "SELECT g.rolname AS role, n.nspname, a.privilege_type, a.is_grantable FROM pg_namespace n"
            " CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN pg_roles g ON g.oid = a.grantee"
            " WHERE n.nspacl IS NOT NULL AND a.grantee <> n.nspowner AND g.rolname = ANY(:r)"), p)}
        db = {(r.role, r.privilege_type, r.is_grantable) for r in self.conn.execute(sa.text(
            "SELECT g.rolname AS role, a.privilege_type, a.is_grantable FROM pg_database d"
            " CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN pg_roles g ON g.oid = a.grantee"
            " WHERE d.datname = current_database() AND d.datacl IS NOT NULL AND a.grantee <> d.datdba"
            " AND g.rolname = ANY(:r)"), p)}
        return {"rel": rel, "schema": schema, "db": db}

    def sync_privileges(self, wanted: dict) -> None:
        have = self.current_privileges(wanted["roles"])
        kinds = {(r[1], r[2]): r[5] for r in have["rel"]}
        have_rel = {r[:5] for r in have["rel"]}
        grant_option = {r[:5] for r in have["rel"] if r[6]}
        q = self.q

        def on(schema: str, rel: str) -> str:
            return ("SEQUENCE " if kinds.get((schema, rel)) == "S" else "TABLE ") + self.qn(schema, rel)

        def grouped(privs: Iterable[Privilege]) -> dict:
            out: dict[tuple, list] = defaultdict(list)
            for role, schema, rel, col, priv in sorted(privs, key=lambda p: (p[0], p[1], p[2], p[4], p[3] or "")):
                out[(role, schema, rel, priv, col is None)].append(col)
            return out

        # revoke column privileges first: a table-level REVOKE also takes the columns' away
        for (role, schema, rel, priv, whole), cols in sorted(grouped(have_rel - wanted["rel"]).items(),
                                                             key=lambda kv: kv[0][4]):
            columns = "" if whole else " (" + ", ".join(q(c) for c in cols) + ")"
            self.run(f"REVOKE {priv}{columns} ON {on(schema, rel)} FROM {q(role)}")
        for (role, schema, rel, priv, whole), cols in grouped(grant_option & wanted["rel"]).items():
            columns = "" if whole else " (" + ", ".join(q(c) for c in cols) + ")"
            self.run(f"REVOKE GRANT OPTION FOR {priv}{columns} ON {on(schema, rel)} FROM {q(role)}")
        for (role, schema, rel, priv, whole), cols in grouped(wanted["rel"] - have_rel).items():
            columns = "" if whole else " (" + ", ".join(q(c) for c in cols) + ")"
            self.run(f"GRANT {priv}{columns} ON {on(schema, rel)} TO {q(role)}")

        have_schema = {s[:3] for s in have["schema"]}
        for role, schema, priv in sorted(have_schema - wanted["schema"]):
            self.run(f"REVOKE {priv} ON SCHEMA {q(schema)} FROM {q(role)}")
        for role, schema, priv in sorted({s[:3] for s in have["schema"] if s[3]} & wanted["schema"]):
            self.run(f"REVOKE GRANT OPTION FOR {priv} ON SCHEMA {q(schema)} FROM {q(role)}")
        for role, schema, priv in sorted(wanted["schema"] - have_schema):
            self.run(f"GRANT {priv} ON SCHEMA {q(schema)} TO {q(role)}")

        have_db = {s[:2] for s in have["db"]}
        db = q(self.database)
        for role, priv in sorted(have_db - wanted["db"]):
            self.run(f"REVOKE {priv} ON DATABASE {db} FROM {q(role)}")
        for role, priv in sorted({s[:2] for s in have["db"] if s[2]} & wanted["db"]):
            self.run(f"REVOKE GRANT OPTION FOR {priv} ON DATABASE {db} FROM {q(role)}")
        for role, priv in sorted(wanted["db"] - have_db):
            self.run(f"GRANT {priv} ON DATABASE {db} TO {q(role)}")

    def verify(self, wanted: dict) -> None:
        """Read the catalogs again: the managed roles hold exactly what is wanted, nothing in raw/std/mpi."""
        have = self.current_privileges(wanted["roles"])
        problems = []
        extra = {r[:5] for r in have["rel"]} ^ wanted["rel"]
        if extra:
            problems.append("relation privileges differ: " + ", ".join(
                sorted({f"{r[0]} on {r[1]}.{r[2]}" for r in extra})[:10]))
        if {s[:3] for s in have["schema"]} != wanted["schema"] or {s[:2] for s in have["db"]} != wanted["db"]:
            problems.append("schema or database privileges differ")
        if any(r[6] for r in have["rel"]) or any(s[3] for s in have["schema"]) or any(s[2] for s in have["db"]):
            problems.append("a managed role holds a grant option")
        if any(r[1] in ("raw", "std", "mpi") for r in have["rel"]) or \
                any(s[1] in ("raw", "std", "mpi") for s in have["schema"]):
            problems.append("a managed role holds a privilege in raw, std or mpi")
        if problems:
            raise GrantsError("after applying the grants, " + "; ".join(problems)
                              + " (were they granted by another role? revoke them as that role)")


def _same_qual(deparsed: str | None, qual: str) -> bool:
    """Compare a policy condition as PostgreSQL prints it with the one we write."""
    if deparsed is None:
        return False
    norm = deparsed.replace("::text", "").strip()
    while norm.startswith("(") and norm.endswith(")"):
        norm = norm[1:-1].strip()
    return norm == qual
