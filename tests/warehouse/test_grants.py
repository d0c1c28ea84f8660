"""Department access enforced by PostgreSQL: real roles, real login users, real privileges and RLS.

Roles are cluster-wide: this module names every role it makes with a prefix unique to the session
(``hub_t<random>_``) and drops them all at the end, so that sessions on a shared server do not collide.
The tests share one applied configuration and run in file order; those that change the configuration
restore it before they end.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from warehouse.grants import GrantsError, apply_grants, department_access, drop_grants, managed_roles
from warehouse.sharing import PUBLISHED_FIELDS, SHARING_FILE, load_sharing

PREFIX = f"hub_t{secrets.token_hex(4)}_"
DEPARTMENTS = sorted(load_sharing())  # the shipped configuration's departments
OTHER_FORBIDDEN = ("publish.master_person", "publish.master_person_current", "publish.enrolment",
                   "publish.enrolment_current", "publish.current_release", "publish.release",
                   "raw.record", "raw.load_batch", "raw.quarantine", "std.resident", "mpi.master", "mpi.crosswalk",
                   "mpi.golden", "audit.access_log", "audit.finding", "audit.publish_attempt")

# synthetic releases: surrogate values only, no personal data
RELEASE_1 = {"masters": 4, "enrolments": {"civil_affairs": 2, "health": 3, "social_security": 1}}
RELEASE_2 = {"masters": 5, "enrolments": {"civil_affairs": 3, "health": 1, "social_security": 2}}
SOURCES = {"civil_affairs": "mz_dibao", "health": "wj_chusheng", "social_security": "rs_yanglao"}


@dataclass
class Env:
    admin: sa.Engine
    url: str
    config_dir: Path
    sharing: dict
    users: dict[str, sa.Engine] = field(default_factory=dict)  # department (or "auditor") -> login engine


def _write_config(directory: Path, name: str, edit) -> dict:
    """The shipped sharing.yaml with ``edit`` applied, loaded through the real loader."""
    data = yaml.safe_load(SHARING_FILE.read_text(encoding="utf-8"))
    edit(data)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_sharing(path)


def _base_config(data: dict) -> None:
    data["departments"]["health"]["enrolments"] = "all"  # one department with every enrolment


def _publish_release(conn: sa.Connection, release_no: int, spec: dict) -> None:
    conn.execute(sa.text(
        "INSERT INTO publish.release (release_no, master_count, record_count, content_hash, validation_run_id)"
        " VALUES (:n, :m, :m, 'test' || :n, 0)"), {"n": release_no, "m": spec["masters"]})
    conn.execute(sa.text(
        "INSERT INTO publish.master_person (release_no, master_id, name, id_number, id_number_status, sex,"
        " birth_date, phone, address, status, status_date, record_count, sources, conflicts)"
        " SELECT :n, 'M' || lpad(i::text, 8, '0'), 'person ' || i, 'ID-' || i, 'valid', 1 + i % 2,"
        " date '2000-01-01' + i, 'PHONE-' || i, 'ADDRESS-' || i, 'alive', date '2020-01-01', 1, ARRAY['mz_dibao'], 0"
        " FROM generate_series(1, :m) i"), {"n": release_no, "m": spec["masters"]})
    for department, count in spec["enrolments"].items():
        conn.execute(sa.text(
            "INSERT INTO publish.enrolment (release_no, master_id, source, source_record_id, department, program,"
            " status_raw) SELECT :n, 'M' || lpad(i::text, 8, '0'), :s, 'R' || :n || '-' || i, :d, 'programme',"
            " 'active' FROM generate_series(1, :c) i"),
            {"n": release_no, "s": SOURCES[department], "d": department, "c": count})
    _make_current(conn, release_no)


def _make_current(conn: sa.Connection, release_no: int) -> None:
    conn.execute(sa.text(
        "INSERT INTO publish.current_release (release_no) VALUES (:n)"
        " ON CONFLICT (singleton) DO UPDATE SET release_no = EXCLUDED.release_no"), {"n": release_no})


def _empty_publish(conn: sa.Connection) -> None:
    conn.execute(sa.text("TRUNCATE publish.current_release, publish.enrolment, publish.master_person,"
                         " publish.release CASCADE"))


def _apply(env: Env, sharing: dict):
    with env.admin.begin() as conn:
        return apply_grants(conn, sharing, role_prefix=PREFIX)


def _join(env: Env, who: str) -> None:
    """Make the login user of ``who`` a member of its group role (again, after the role was re-created)."""
    group = f"{PREFIX}auditor" if who == "auditor" else f"{PREFIX}dept_{who}"
    with env.admin.begin() as conn:
        conn.exec_driver_sql(f'GRANT "{group}" TO "{PREFIX}u_{who}"')


def _try(engine: sa.Engine, sql: str) -> str:
    """'ok' when the query runs, 'no connect' when the user may not even connect to the database,
    else its SQLSTATE (42501 = insufficient privilege)."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql).fetchall()
        return "ok"
    except sa.exc.DBAPIError as exc:
        if exc.orig.pgcode is None and "permission denied for database" in str(exc.orig):
            return "no connect"
        return exc.orig.pgcode


def _as_role(env: Env, role: str, sql: str) -> list[tuple]:
    """Run ``sql`` as ``role`` (SET LOCAL ROLE from the admin's session, in a transaction rolled back).

    The owner roles need no USAGE on schema publish for their views to work (a view's references are
    not looked up by name again); it is lent here, in the same rolled-back transaction, so that a
    query can name publish's objects directly and meet the column privileges and policies."""
    with env.admin.connect() as conn:
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA publish TO "{role}"')
        conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def _rows(engine: sa.Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


@pytest.fixture(scope="module")
def env(engine, database_url, tmp_path_factory):
    config_dir = tmp_path_factory.mktemp("sharing")
    sharing = _write_config(config_dir, "base", _base_config)
    with engine.begin() as conn:
        _empty_publish(conn)
        _publish_release(conn, 1, RELEASE_1)
    env = Env(engine, database_url, config_dir, sharing)
    try:
        _apply(env, sharing)
        for who in [*DEPARTMENTS, "auditor"]:
            user, password = f"{PREFIX}u_{who}", secrets.token_hex(12)
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")
            _join(env, who)
            url = make_url(database_url).set(username=user, password=password)
            env.users[who] = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        yield env
    finally:
        for user_engine in env.users.values():
            user_engine.dispose()
        with engine.begin() as conn:
            drop_grants(conn, role_prefix=PREFIX)
            for who in [*DEPARTMENTS, "auditor"]:
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{PREFIX}u_{who}"')
            conn.exec_driver_sql("ALTER TABLE publish.enrolment DISABLE ROW LEVEL SECURITY")
            _empty_publish(conn)
            left = conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE left(rolname, length(:p)) = :p"),
                                {"p": PREFIX}).scalars().all()
        assert left == [], f"roles left behind: {left}"


def _field_matrix(env: Env, sharing: dict) -> tuple[dict, dict]:
    """Per (department, field): can the department's user select it through its view, and does the
    view's owner hold SELECT on that column of publish.master_person_current?"""
    seen, owner = {}, {}
    with env.admin.connect() as conn:
        for department in sharing:
            for f in PUBLISHED_FIELDS:
                seen[department, f] = _try(env.users[department],
                                           f"SELECT {f} FROM dept_{department}.master_person") == "ok"
                owner[department, f] = conn.execute(sa.text(
                    "SELECT has_column_privilege(:r, 'publish.master_person_current', :f, 'SELECT')"),
                    {"r": f"{PREFIX}owner_{department}", "f": f}).scalar_one()
    return seen, owner


def _expected_matrix(sharing: dict) -> dict:
    return {(d, f): f in sharing[d].visible() for d in sharing for f in PUBLISHED_FIELDS}


def _expected_owner_matrix(sharing: dict) -> dict:
    """What the view owner reads of publish.master_person_current: the visible fields, except that with
    ``enrolments: own`` it counts the master's own records (master_id) and never reads conflicts."""
    expected = _expected_matrix(sharing)
    for d in sharing:
        if sharing[d].own_enrolments_only:
            expected[d, "conflicts"] = False
            expected[d, "master_id"] |= "record_count" in sharing[d].visible()
    return expected


def test_every_department_sees_exactly_its_fields(env):
    seen, owner = _field_matrix(env, env.sharing)
    expected = _expected_matrix(env.sharing)
    assert seen == expected
    assert owner == _expected_owner_matrix(env.sharing)
    assert not owner["social_security", "conflicts"] and owner["health", "conflicts"]  # health: `all` here
    # the shipped configuration's particular decisions
    assert expected["civil_affairs", "phone"] and expected["health", "phone"]
    assert not expected["social_security", "phone"] and not expected["social_security", "address"]


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_department_view_shows_the_current_release(env, department):
    user = env.users[department]
    with user.connect() as conn:
        result = conn.exec_driver_sql(f"SELECT * FROM dept_{department}.master_person ORDER BY master_id")
        assert tuple(result.keys()) == ("release_no", *env.sharing[department].visible())
        rows = result.all()
    assert len(rows) == RELEASE_1["masters"] and {r.release_no for r in rows} == {1}


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_department_is_refused_everything_else(env, department):
    user = env.users[department]
    others = [f"dept_{d}.{v}" for d in DEPARTMENTS if d != department for v in ("master_person", "enrolment")]
    outcomes = {target: _try(user, f"SELECT * FROM {target} LIMIT 1") for target in [*OTHER_FORBIDDEN, *others]}
    outcomes["count(*) on publish.master_person"] = _try(user, "SELECT count(*) FROM publish.master_person")
    outcomes["SET ROLE to the view owner"] = _try(user, f'SET ROLE "{PREFIX}owner_{department}"')
    outcomes["SET ROLE to another department"] = _try(
        user, f'SET ROLE "{PREFIX}dept_{next(d for d in DEPARTMENTS if d != department)}"')
    assert outcomes == {k: "42501" for k in outcomes}


def test_roles_hold_nothing_in_raw_std_mpi_or_on_base_tables(env):
    with env.admin.connect() as conn:
        roles = managed_roles(conn, role_prefix=PREFIX)
        assert sorted(roles) == sorted([f"{PREFIX}auditor", *(f"{PREFIX}dept_{d}" for d in DEPARTMENTS),
                                        *(f"{PREFIX}owner_{d}" for d in DEPARTMENTS)])
        held = conn.execute(sa.text(
            "SELECT r.rolname, n.nspname || '.' || c.relname FROM pg_roles r, pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE r.rolname = ANY(:roles) AND n.nspname IN ('raw', 'std', 'mpi', 'publish', 'audit')"
            " AND c.relkind IN ('r', 'v', 'm', 'p', 'S')"
            " AND (has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
            "      OR has_any_column_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES'))"),
            {"roles": roles}).all()
        schemas = conn.execute(sa.text(
            "SELECT r.rolname, n.nspname FROM pg_roles r, pg_namespace n WHERE r.rolname = ANY(:roles)"
            " AND n.nspname IN ('raw', 'std', 'mpi', 'publish', 'audit')"
            " AND has_schema_privilege(r.oid, n.oid, 'USAGE, CREATE')"), {"roles": roles}).all()
        attributes = conn.execute(sa.text(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(:roles)"
            " AND (rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb)"), {"roles": roles}).all()
        owner_members = conn.execute(sa.text(
            "SELECT o.rolname FROM pg_auth_members m JOIN pg_roles o ON o.oid = m.roleid"
            " WHERE o.rolname LIKE :p"), {"p": PREFIX.replace("_", r"\_") + r"owner\_%"}).all()
        # another prefix (the default hub_ included) never takes these roles for its own
        assert set(managed_roles(conn, role_prefix="hub_")).isdisjoint(roles)
    department_roles = {f"{PREFIX}dept_{d}" for d in DEPARTMENTS}
    auditor = f"{PREFIX}auditor"
    # department roles: nothing anywhere in the warehouse layers
    assert [h for h in held if h[0] in department_roles] == []
    assert [s for s in schemas if s[0] in department_roles] == []
    # owner roles: only the three publish objects their views read; the auditor: publish and audit
    for role, relation in held:
        if role == auditor:
            assert relation.split(".")[0] in ("publish", "audit")
        else:
            assert relation in ("publish.master_person_current", "publish.enrolment", "publish.current_release",
                                "publish.release")  # release: the redirects of master_id_redirect
    assert sorted({s[1] for s in schemas if s[0] == auditor}) == ["audit", "publish"]
    assert [s for s in schemas if s[0] != auditor] == []
    assert attributes == [] and owner_members == []


def _enrolments_seen(env: Env, department: str) -> dict[str, int]:
    return dict(_rows(env.users[department],
                      f"SELECT department, count(*) FROM dept_{department}.enrolment GROUP BY 1"))


def test_row_level_security_limits_enrolments(env):
    everything = RELEASE_1["enrolments"]
    assert _enrolments_seen(env, "civil_affairs") == {"civil_affairs": everything["civil_affairs"]}
    assert _enrolments_seen(env, "social_security") == {"social_security": everything["social_security"]}
    assert _enrolments_seen(env, "health") == everything  # configured `enrolments: all`
    with env.admin.connect() as conn:
        # the filter is the policy, not the view: the view has no condition on the department ...
        definition = conn.execute(sa.text("SELECT pg_get_viewdef('dept_civil_affairs.enrolment'::regclass)")).scalar()
        assert "department =" not in definition and "WHERE" not in definition.upper()
        # ... and the table itself is filtered for the view's owner
        policies = dict(conn.execute(sa.text(
            "SELECT policyname, roles::text FROM pg_policies WHERE schemaname = 'publish' AND tablename = 'enrolment'"
            " AND policyname LIKE :p"), {"p": PREFIX.replace("_", r"\_") + "%"}).all())
        assert set(policies) == {f"{PREFIX}auditor", *(f"{PREFIX}enrolment_{d}" for d in DEPARTMENTS)}
    for department, expected in (("civil_affairs", 2), ("health", 6)):
        assert _as_role(env, f"{PREFIX}owner_{department}", "SELECT count(*) FROM publish.enrolment") == [(expected,)]
    # master ids are in the enrolment view because every department may see master_id
    assert _rows(env.users["civil_affairs"], "SELECT count(master_id) FROM dept_civil_affairs.enrolment") == [(2,)]


def test_auditor_reads_publish_and_audit_only(env):
    auditor = env.users["auditor"]
    for target in ("publish.master_person", "publish.master_person_current", "publish.enrolment_current",
                   "publish.release", "audit.access_log", "audit.finding", "audit.publish_attempt"):
        assert _try(auditor, f"SELECT * FROM {target} LIMIT 1") == "ok", target
    assert _rows(auditor, "SELECT count(*) FROM publish.enrolment") == [(6,)]  # its policy lets it see all
    assert _rows(auditor, "SELECT count(phone) FROM publish.master_person_current") == [(4,)]
    for target in ("raw.record", "std.resident", "mpi.golden", "mpi.crosswalk", "dept_health.master_person"):
        assert _try(auditor, f"SELECT * FROM {target} LIMIT 1") == "42501", target
    # the webhooks' signing secrets: the auditors read every other column, the secret only the hub's own user
    assert _try(auditor, "SELECT webhook_id, department, url, purpose, from_release FROM publish.webhook") == "ok"
    for sql in ("SELECT secret FROM publish.webhook", "SELECT * FROM publish.webhook"):
        assert _try(auditor, sql) == "42501", sql
    with env.admin.connect() as conn:
        conn.exec_driver_sql(f'SET ROLE "{PREFIX}auditor"')
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.exec_driver_sql("SELECT secret FROM publish.webhook")
        conn.rollback()
        # nor does the read API's role (delivery runs as the hub's own user)
        assert conn.execute(sa.text("SELECT has_column_privilege(:r, 'publish.webhook', 'secret', 'SELECT')"),
                            {"r": f"{PREFIX}api"}).scalar() is False


def test_views_follow_the_current_release(env):
    with env.admin.begin() as conn:
        _publish_release(conn, 2, RELEASE_2)
    try:
        for department in DEPARTMENTS:
            assert _rows(env.users[department], f"SELECT release_no, count(*) FROM dept_{department}.master_person"
                                                " GROUP BY 1") == [(2, RELEASE_2["masters"])]
        assert _enrolments_seen(env, "civil_affairs") == {"civil_affairs": 3}
        assert _enrolments_seen(env, "health") == RELEASE_2["enrolments"]
    finally:
        with env.admin.begin() as conn:
            _make_current(conn, 1)
    assert _enrolments_seen(env, "civil_affairs") == {"civil_affairs": 2}


def _notices_of(engine: sa.Engine, sql: str, *, rollback: bool = False) -> list[str]:
    """The NOTICE messages ``sql`` raised (read from the driver's connection)."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
        if rollback:
            raw.driver_connection.rollback()
        return [n.strip() for n in raw.driver_connection.notices]
    finally:
        raw.close()


def test_department_roles_cannot_create_functions(env):
    user = env.users["civil_affairs"]
    leak = "RETURNS boolean LANGUAGE sql AS 'SELECT true'"
    assert _try(user, f"CREATE FUNCTION pg_temp.leak(text) {leak}") == "42501"  # no TEMPORARY on the database
    assert _try(user, f"CREATE FUNCTION public.leak(text) {leak}") == "42501"  # no CREATE on schema public
    assert _try(user, f"CREATE FUNCTION dept_civil_affairs.leak(text) {leak}") == "42501"
    assert _try(user, "CREATE TEMPORARY TABLE t (x int)") == "42501"
    with env.admin.connect() as conn:
        public = conn.execute(sa.text(
            "SELECT a.privilege_type FROM pg_database d CROSS JOIN LATERAL"
            " aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            " WHERE d.datname = current_database() AND a.grantee = 0")).scalars().all()
        assert public == []
        barriers = conn.execute(sa.text(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE 'security_barrier=true' = ANY(c.reloptions)"
            " AND c.oid::regclass::text = ANY(:v) ORDER BY 1"),
            {"v": ["publish.master_person_current", "publish.enrolment_current",
                   *(f"dept_{d}.{v}" for d in DEPARTMENTS for v in ("master_person", "enrolment",
                                                                     "master_id_redirect"))]}).scalars().all()
        assert len(barriers) == 2 + 3 * len(DEPARTMENTS)


def test_a_leaky_function_reads_nothing_of_a_withdrawn_release_or_other_departments(env):
    """The attack: a cheap function that prints its arguments, in the WHERE of a query on the views. A
    superuser plants it where the department may call it (schema public), as a department could have
    with TEMPORARY; the security barrier applies the views' conditions (current release, row security)
    first, so it only ever sees rows the department may see anyway."""
    leak = f"public.{PREFIX}leak"
    with env.admin.begin() as conn:
        if not conn.execute(sa.text("SELECT count(*) FROM publish.release WHERE release_no = 2")).scalar():
            _publish_release(conn, 2, RELEASE_2)
        _make_current(conn, 1)  # release 2 is withdrawn: its rows stay in the tables
        conn.execution_options(no_parameters=True).exec_driver_sql(
            f"CREATE FUNCTION {leak}(text, integer) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS"
            " $$ BEGIN RAISE NOTICE 'leak % %', $1, $2; RETURN true; END $$")
    try:
        persons = _notices_of(env.users["civil_affairs"],
                              f"SELECT * FROM dept_civil_affairs.master_person WHERE {leak}(master_id, release_no)")
        enrolments = _notices_of(env.users["civil_affairs"],
                                 f"SELECT * FROM dept_civil_affairs.enrolment WHERE {leak}(source, release_no)")
        # the attack is real: without the barriers (in a transaction rolled back) the same query leaks
        unguarded = _notices_of(env.admin, (
            "BEGIN; ALTER VIEW dept_civil_affairs.master_person RESET (security_barrier);"
            " ALTER VIEW publish.master_person_current RESET (security_barrier);"
            f' SET LOCAL ROLE "{PREFIX}dept_civil_affairs";'
            f" SELECT * FROM dept_civil_affairs.master_person WHERE {leak}(master_id, release_no)"), rollback=True)
    finally:
        with env.admin.begin() as conn:
            conn.exec_driver_sql(f"DROP FUNCTION {leak}(text, integer)")
    assert f"NOTICE:  leak M{RELEASE_2['masters']:08d} 2" in unguarded
    assert sorted(persons) == sorted(f"NOTICE:  leak M{i:08d} 1" for i in range(1, RELEASE_1["masters"] + 1))
    assert sorted(enrolments) == [f"NOTICE:  leak {SOURCES['civil_affairs']} 1"] * RELEASE_1["enrolments"]["civil_affairs"]


def test_sources_show_only_the_departments_own_with_enrolments_own(env):
    everything = sorted(SOURCES.values())
    with env.admin.begin() as conn:
        conn.execute(sa.text("UPDATE publish.master_person SET sources = :s WHERE release_no = 1 AND master_id = 'M00000001'"),
                     {"s": everything})
    try:
        seen = {d: _rows(env.users[d], f"SELECT sources FROM dept_{d}.master_person WHERE master_id = 'M00000001'")[0][0]
                for d in DEPARTMENTS}
    finally:
        with env.admin.begin() as conn:
            conn.execute(sa.text("UPDATE publish.master_person SET sources = ARRAY['mz_dibao']"
                                 " WHERE release_no = 1 AND master_id = 'M00000001'"))
    assert seen == {"social_security": ["rs_yanglao"], "civil_affairs": ["mz_dibao"],
                    "health": everything}  # health is configured `enrolments: all` here
    # the others' persons: civil affairs' source is not social security's
    assert _rows(env.users["social_security"], "SELECT DISTINCT sources FROM dept_social_security.master_person") == [([],)]


def _derived(env: Env, department: str) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in _rows(env.users[department], "SELECT master_id, record_count, conflicts, sources"
                                                              f" FROM dept_{department}.master_person")}


def test_record_count_and_conflicts_tell_nothing_of_other_departments_with_enrolments_own(env):
    """Master 1 has records in all three departments (civil affairs two), 6 in all, and 2 conflicts;
    master 2 one of civil affairs (and one of health)."""
    everything = sorted(SOURCES.values())
    with env.admin.begin() as conn:
        conn.execute(sa.text("UPDATE publish.master_person SET record_count = 6, conflicts = 2, sources = :s"
                             " WHERE release_no = 1 AND master_id = 'M00000001'"), {"s": everything})
        conn.execute(sa.text(
            "INSERT INTO publish.enrolment (release_no, master_id, source, source_record_id, department, program,"
            " status_raw) VALUES (1, 'M00000001', 'mz_dibao', 'R1-extra', 'civil_affairs', 'programme', 'active')"))
    try:
        seen = {d: _derived(env, d) for d in DEPARTMENTS}
        with env.admin.connect() as conn:
            notes = dict(conn.execute(sa.text(
                "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a"
                " WHERE a.attrelid = 'dept_social_security.master_person'::regclass AND a.attnum > 0")).all())
    finally:
        with env.admin.begin() as conn:
            conn.execute(sa.text("DELETE FROM publish.enrolment WHERE source_record_id = 'R1-extra'"))
            conn.execute(sa.text("UPDATE publish.master_person SET record_count = 1, conflicts = 0,"
                                 " sources = ARRAY['mz_dibao'] WHERE release_no = 1 AND master_id = 'M00000001'"))
    # record_count is the number of the master's records of the department's own sources; no conflicts
    assert seen["social_security"] == {"M00000001": (1, None, ["rs_yanglao"]), "M00000002": (0, None, []),
                                       "M00000003": (0, None, []), "M00000004": (0, None, [])}
    # sources: the department's own sources the master has records of (masters 3 and 4 are published with
    # mz_dibao among their sources but hold no civil-affairs record in this module's data: none listed)
    assert seen["civil_affairs"] == {"M00000001": (2, None, ["mz_dibao"]), "M00000002": (1, None, ["mz_dibao"]),
                                     "M00000003": (0, None, []), "M00000004": (0, None, [])}
    # with `enrolments: all` (health, in this module's configuration) the published values, as before
    assert seen["health"] == {"M00000001": (6, 2, everything), "M00000002": (1, 0, ["mz_dibao"]),
                              "M00000003": (1, 0, ["mz_dibao"]), "M00000004": (1, 0, ["mz_dibao"])}
    assert "own sources" in notes["record_count"] and "always NULL" in notes["conflicts"]
    with env.admin.connect() as conn:
        barrier = conn.execute(sa.text(
            "SELECT c.relname, 'security_barrier=true' = ANY(c.reloptions) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(:s) AND c.relkind = 'v'"),
            {"s": [f"dept_{d}" for d in DEPARTMENTS]}).all()
    assert len(barrier) == 3 * len(DEPARTMENTS) and all(b for _, b in barrier)


def test_reapplying_the_same_configuration_changes_nothing(env):
    report = _apply(env, env.sharing)
    assert report.statements == [] and not report.changed
    assert [d.department for d in report.departments] == DEPARTMENTS
    assert report.removed_departments == [] and report.kept_roles == []


def _narrowed(data: dict) -> None:
    _base_config(data)
    data["departments"]["civil_affairs"]["fields"] = {"sex": "不予共享"}  # and phone back to the default 不予共享
    data["departments"]["civil_affairs"]["enrolments"] = "all"
    data["departments"]["health"]["enrolments"] = "own"
    data["departments"]["social_security"]["fields"]["master_id"] = "不予共享"
    data["fields"]["name"] = "不予共享"


def test_the_api_role_is_a_login_member_of_the_departments_and_nothing_more(env):
    api = f"{PREFIX}api"
    with env.admin.begin() as conn:  # as a restore's roles file leaves it: NOLOGIN, INHERIT
        conn.exec_driver_sql(f'ALTER ROLE "{api}" NOLOGIN INHERIT')
    report = _apply(env, env.sharing)
    assert [s for s in report.statements if api in s] == [f"ALTER ROLE {api} LOGIN NOINHERIT"]
    with env.admin.connect() as conn:
        attrs = conn.execute(sa.text("SELECT rolcanlogin, rolsuper, rolcreaterole, rolbypassrls, rolinherit"
                                     " FROM pg_roles WHERE rolname = :r"), {"r": api}).one()
        groups = conn.execute(sa.text(
            "SELECT g.rolname FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid"
            " JOIN pg_roles m ON m.oid = am.member WHERE m.rolname = :r ORDER BY 1"), {"r": api}).scalars().all()
        may = {t: conn.execute(sa.text("SELECT has_any_column_privilege(:r, :t, 'SELECT')"), {"r": api, "t": t}).scalar()
               for t in ("publish.current_release", "audit.api_key", "publish.master_person",
                         "publish.enrolment", "raw.record", "audit.export_log")}
    assert tuple(attrs) == (True, False, False, False, False)
    assert groups == [f"{PREFIX}dept_{d}" for d in DEPARTMENTS]  # never an owner role
    assert may == {"publish.current_release": True, "audit.api_key": True, "publish.master_person": False,
                   "publish.enrolment": False, "raw.record": False, "audit.export_log": False}


def test_reapplying_after_a_change_revokes_what_is_no_longer_allowed(env):
    narrowed = _write_config(env.config_dir, "narrowed", _narrowed)
    report = _apply(env, narrowed)
    try:
        assert report.changed
        seen, owner = _field_matrix(env, narrowed)
        assert seen == _expected_matrix(narrowed) and owner == _expected_owner_matrix(narrowed)
        # social security may not see master_id; its view's owner still reads it, to count its records
        assert not seen["social_security", "master_id"] and owner["social_security", "master_id"]
        assert _rows(env.users["social_security"], "SELECT record_count FROM dept_social_security.master_person"
                                                   " ORDER BY record_count DESC") == [(1,), (0,), (0,), (0,)]
        assert not seen["civil_affairs", "sex"] and not seen["civil_affairs", "phone"]
        assert not any(seen[d, "name"] for d in DEPARTMENTS)
        # the column privilege is gone from the base view too, not only the column from the department view
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            _as_role(env, f"{PREFIX}owner_civil_affairs", "SELECT sex FROM publish.master_person_current")
        # row-level security follows the configuration
        assert _enrolments_seen(env, "civil_affairs") == RELEASE_1["enrolments"]
        assert _enrolments_seen(env, "health") == {"health": 3}
        # a department that may not see master_id does not get it through its enrolments either
        assert _try(env.users["social_security"], "SELECT master_id FROM dept_social_security.enrolment") == "42703"
        assert _try(env.users["social_security"], "SELECT source_record_id FROM dept_social_security.enrolment") == "ok"
        assert _apply(env, narrowed).statements == []
    finally:
        _apply(env, env.sharing)
    seen, _ = _field_matrix(env, env.sharing)
    assert seen == _expected_matrix(env.sharing)
    assert _enrolments_seen(env, "civil_affairs") == {"civil_affairs": 2}


def test_a_department_removed_from_the_configuration_loses_everything(env):
    def without_health(data: dict) -> None:
        _base_config(data)
        del data["departments"]["health"]

    without = _write_config(env.config_dir, "without", without_health)
    report = _apply(env, without)
    try:
        assert report.removed_departments == ["health"] and report.kept_roles == []
        user = env.users["health"]
        # CONNECT came with the department's role, and PUBLIC has none: the user cannot even connect
        assert _try(user, "SELECT * FROM dept_health.master_person") == "no connect"
        assert _try(user, "SELECT * FROM publish.enrolment") == "no connect"
        with env.admin.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = 'dept_health'")).scalar() == 0
            assert f"{PREFIX}dept_health" not in managed_roles(conn, role_prefix=PREFIX)
            assert conn.execute(sa.text("SELECT count(*) FROM pg_policies WHERE policyname = :p"),
                                {"p": f"{PREFIX}enrolment_health"}).scalar() == 0
        assert _enrolments_seen(env, "civil_affairs") == {"civil_affairs": 2}  # the others are untouched
    finally:
        _apply(env, env.sharing)
        _join(env, "health")
    assert _enrolments_seen(env, "health") == RELEASE_1["enrolments"]


def test_grants_refuse_bad_names_and_the_wrong_database(env):
    with pytest.raises(GrantsError, match="role prefix"):
        department_access(env.sharing, role_prefix="Hub-")
    long = {"x" * 60: next(iter(env.sharing.values()))}
    with pytest.raises(GrantsError, match="longer than 63 bytes"):
        department_access(long, role_prefix=PREFIX)
    with env.admin.begin() as conn, pytest.raises(GrantsError, match="connection's database"):
        apply_grants(conn, env.sharing, role_prefix=PREFIX, database="another_database")


def test_drop_grants_removes_every_role_of_the_prefix(env):
    """Last: the fixture's teardown drops again, which must then find nothing."""
    with env.admin.begin() as conn:
        statements = drop_grants(conn, role_prefix=PREFIX)
        assert statements and managed_roles(conn, role_prefix=PREFIX) == []
        assert conn.execute(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'dept\\_%'")).scalar() == 0
    assert _try(env.users["civil_affairs"], "SELECT * FROM dept_civil_affairs.master_person") != "ok"
    with env.admin.begin() as conn:
        assert drop_grants(conn, role_prefix=PREFIX) == []


def test_the_table_owner_with_createrole_applies_without_superuser(server_admin_url):
    """The hub's own user on a real server is usually no superuser: the owner of the warehouse with
    CREATEROLE must be able to apply, re-apply and drop the grants, and RLS must hold the same."""
    prefix = f"hub_n{secrets.token_hex(4)}_"
    applier, member, password = f"{prefix}applier", f"{prefix}u_civil_affairs", secrets.token_hex(12)
    database = f"hub_test_grants_{secrets.token_hex(5)}"
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
            pytest.skip("needs a superuser on the test server to create the applying role")
        conn.exec_driver_sql(f"CREATE ROLE \"{applier}\" LOGIN CREATEROLE PASSWORD '{password}'")
        conn.exec_driver_sql(f'CREATE DATABASE "{database}" OWNER "{applier}"')
    hub = sa.create_engine(make_url(server_admin_url).set(database=database, username=applier, password=password),
                           poolclass=NullPool)
    try:
        from warehouse.migrate import upgrade

        upgrade(hub)
        with hub.begin() as conn:
            _publish_release(conn, 1, RELEASE_1)
            report = apply_grants(conn, load_sharing(), role_prefix=prefix)
            assert [s for s in report.statements if "TO CURRENT_USER" in s] == [
                *(f"GRANT {prefix}owner_{d} TO CURRENT_USER" for d in DEPARTMENTS), f"GRANT {prefix}api TO CURRENT_USER"]
            conn.exec_driver_sql(f"CREATE ROLE \"{member}\" LOGIN PASSWORD '{password}' IN ROLE \"{prefix}dept_civil_affairs\"")
        with hub.begin() as conn:
            assert apply_grants(conn, load_sharing(), role_prefix=prefix).statements == []
        user = sa.create_engine(make_url(server_admin_url).set(database=database, username=member, password=password),
                                poolclass=NullPool)
        assert _rows(user, "SELECT department, count(*) FROM dept_civil_affairs.enrolment GROUP BY 1") == [
            ("civil_affairs", RELEASE_1["enrolments"]["civil_affairs"])]
        assert _try(user, "SELECT * FROM publish.enrolment") == "42501"
        user.dispose()
        with hub.begin() as conn:
            drop_grants(conn, role_prefix=prefix)
            conn.exec_driver_sql(f'DROP ROLE "{member}"')
            assert managed_roles(conn, role_prefix=prefix) == []
    finally:
        hub.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE left(rolname, length(:p)) = :p"
                                             " ORDER BY rolname = :a"), {"p": prefix, "a": applier}).scalars():
                conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


def test_a_wrong_sharing_file_is_refused_naming_the_file_department_and_field(tmp_path):
    from warehouse.sharing import SharingError

    with pytest.raises(SharingError, match=r"cannot read sharing configuration .*absent\.yaml"):
        load_sharing(tmp_path / "absent.yaml")
    listed = tmp_path / "listed.yaml"
    listed.write_text("- health\n", encoding="utf-8")
    with pytest.raises(SharingError, match=r"invalid sharing configuration .*listed\.yaml: expected a mapping"):
        load_sharing(listed)

    def wrong(data: dict) -> None:
        data["departments"]["health"]["fields"] = {"name": "公开", "shoe_size": "无条件"}
        data["departments"]["health"]["enrolments"] = "some"
        data["departments"]["civil_affairs"] = ["name"]

    with pytest.raises(SharingError) as refused:
        _write_config(tmp_path, "wrong", wrong)
    message = str(refused.value)
    assert "departments.health.fields.shoe_size: unknown field" in message
    assert "departments.health.fields.name: '公开' is not one of" in message
    assert "departments.health.enrolments: 'some' is not 'own' or 'all'" in message
    assert "departments.civil_affairs: expected a mapping" in message
    assert "wrong.yaml" in message
