"""The read API in the database as least privilege: its own login role (never a superuser), each
request read as the caller's department through the department's views (real PostgreSQL, real roles,
the API on loopback)."""

from __future__ import annotations

import logging
import secrets

import httpx
import pytest
import sqlalchemy as sa

from hub.api import RateLimit, create_app
from hub.api_db import api_engine, warn_if_superuser
from hub.api_keys import create_key
from hub.errors import HubError
from tests.helpers import empty_warehouse
from tests.test_api import PERSONS, _h, _serve
from warehouse import serving
from warehouse.grants import apply_grants, drop_grants
from warehouse.sharing import load_sharing

PREFIX = f"hub_r{secrets.token_hex(4)}_"
API_ROLE = f"{PREFIX}api"


@pytest.fixture(scope="module")
def warehouse(engine):
    """Two persons of release 1 (the first in two departments' programmes), a review pair, and the
    department views applied under this module's role prefix (dropped again afterwards)."""
    empty_warehouse(engine)
    with engine.begin() as conn:
        for m in ("M000000001", "M000000002"):
            conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) VALUES (:m, :a)"), {"m": m, "a": f"rec:t/{m}"})
        conn.execute(sa.text("INSERT INTO publish.release (release_no, master_count, record_count, content_hash,"
                             " validation_run_id) VALUES (1, 2, 3, 'test', 0)"))
        conn.execute(sa.text("INSERT INTO publish.current_release (release_no) VALUES (1)"))
        for m in ("M000000001", "M000000002"):
            conn.execute(sa.text(
                "INSERT INTO publish.master_person (release_no, master_id, name, id_number, id_number_status, sex,"
                " birth_date, phone, address, status, record_count, sources) VALUES (1, :m, :name, :id_number,"
                " 'valid', :sex, CAST(:birth_date AS date), :phone, :address, :status, 1, :sources)"),
                dict(PERSONS[m], m=m, sources=["mz_dibao", "rs_yanglao"] if m == "M000000001" else ["wj_chusheng"]))
        conn.execute(sa.text(
            "INSERT INTO publish.enrolment (release_no, master_id, source, source_record_id, department, program,"
            " status_raw) VALUES (1, 'M000000001', 'mz_dibao', 'D-1', 'civil_affairs', 'dibao', '在保'),"
            " (1, 'M000000001', 'rs_yanglao', 'Y-1', 'social_security', 'pension', '正常'),"
            " (1, 'M000000002', 'wj_chusheng', 'C-1', 'health', 'birth', '登记')"))
        conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES ('mz_dibao')"))
        for rid, m in (("D-1", "M000000001"), ("D-2", "M000000002")):
            p = PERSONS[m]
            raw_id = conn.execute(sa.text(
                "INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)"
                " VALUES ('mz_dibao', :r, 'h', '{}', 1, now()) RETURNING record_id"), {"r": rid}).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO std.resident (source, source_record_id, raw_record_id, batch_id, name, name_status,"
                " id_number, id_number_status) VALUES ('mz_dibao', :r, :raw, 1, :n, 'valid', :i, 'valid')"),
                {"r": rid, "raw": raw_id, "n": p["name"], "i": p["id_number"]})
            conn.execute(sa.text("INSERT INTO mpi.crosswalk (source, source_record_id, master_id, match_rule)"
                                 " VALUES ('mz_dibao', :r, :m, 'test')"), {"r": rid, "m": m})
        conn.execute(sa.text(
            "INSERT INTO mpi.review_pair (record_key_l, record_key_r, match_probability, match_weight, review_reason,"
            " evidence) VALUES ('mz_dibao/D-1', 'mz_dibao/D-2', 0.6, 0.5, 'grey_zone', '{}')"))
        apply_grants(conn, load_sharing(), role_prefix=PREFIX)
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            drop_grants(conn, role_prefix=PREFIX)
            conn.exec_driver_sql("ALTER TABLE publish.enrolment DISABLE ROW LEVEL SECURITY")
        empty_warehouse(engine)


@pytest.fixture(scope="module")
def api_db(warehouse, database_url):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HUB_API_DATABASE_URL", raising=False)
        engine = api_engine(database_url, role_prefix=PREFIX)
    yield engine
    engine.dispose()


def _code(engine: sa.Engine, sql: str) -> str:
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql).fetchall()
        return "ok"
    except sa.exc.DBAPIError as exc:
        return exc.orig.pgcode


def test_the_api_connects_as_its_own_role_which_is_not_a_superuser(api_db):
    with api_db.connect() as conn:
        user, superuser, bypass, createrole = conn.execute(sa.text(
            "SELECT current_user, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles"
            " WHERE rolname = current_user")).one()
    assert (user, superuser, bypass, createrole) == (API_ROLE, False, False, False)
    assert warn_if_superuser(api_db) is False
    # it reads persons only as a department: not the tables, not the views as itself (NOINHERIT)
    for target in ("publish.master_person", "publish.master_person_current", "publish.enrolment", "raw.record",
                   "dept_civil_affairs.master_person"):
        assert _code(api_db, f"SELECT * FROM {target} LIMIT 1") == "42501", target
    assert _code(api_db, "SELECT release_no FROM publish.current_release") == "ok"
    assert _code(api_db, "SELECT * FROM audit.api_key LIMIT 1") == "ok"
    assert _code(api_db, "UPDATE audit.api_key SET revoked_at = now() WHERE false") == "42501"


def test_a_missing_role_or_a_superuser_is_refused_by_name(warehouse, database_url):
    with pytest.raises(HubError, match=r"hub grants apply"):
        api_engine(database_url, role_prefix=f"hub_none{secrets.token_hex(3)}_")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUB_API_DATABASE_URL", database_url)  # the tests' superuser
        with pytest.raises(HubError, match=r"is a superuser"):
            api_engine(database_url, role_prefix=PREFIX)


def test_with_a_password_in_the_warehouse_url_the_session_switches_to_the_api_role(warehouse, database_url):
    """A warehouse URL with a password (the compose file's): log in as that user, then SET ROLE."""
    from sqlalchemy.engine import make_url

    login, password = f"{PREFIX}warehouse_user", secrets.token_hex(12)
    with warehouse.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE \"{login}\" LOGIN PASSWORD '{password}' IN ROLE \"{API_ROLE}\"")
    try:
        url = make_url(database_url).set(username=login, password=password).render_as_string(hide_password=False)
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("HUB_API_DATABASE_URL", raising=False)
            engine = api_engine(url, role_prefix=PREFIX)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT session_user, current_user")).one() == (login, API_ROLE)
            [person] = serving.persons_by_master_id(conn, "M000000002", ("status",), department="health")
            assert person["master_id"] == "M000000002"
            assert conn.execute(sa.text("SELECT current_user")).scalar() == API_ROLE
        engine.dispose()
    finally:
        with warehouse.begin() as conn:
            conn.exec_driver_sql(f'DROP ROLE "{login}"')


def test_serving_reads_as_the_callers_department(api_db):
    with api_db.connect() as conn:
        [person] = serving.persons_by_master_id(conn, "M000000001", ("sex", "sources"), department="social_security")
        assert person == {"master_id": "M000000001", "sex": 1, "sources": ["rs_yanglao"]}  # not civil affairs'
        [person] = serving.persons_by_master_id(conn, "M000000001", ("sources",), department="civil_affairs")
        assert person["sources"] == ["mz_dibao"]
        found = serving.persons_by_id_numbers(conn, [PERSONS["M000000002"]["id_number"]], ("status",),
                                              department="health")
        assert [p["master_id"] for p in found] == ["M000000002"]
        seen = {d: serving.enrolments(conn, ["M000000001", "M000000002"], department=d)
                for d in ("civil_affairs", "social_security", "health")}
        # and the transaction is the API's own again: the department's role ended with its savepoint
        assert conn.execute(sa.text("SELECT current_user")).scalar() == API_ROLE
    assert {d: {m: [e["source"] for e in es] for m, es in v.items()} for d, v in seen.items()} == {
        "civil_affairs": {"M000000001": ["mz_dibao"]},
        "social_security": {"M000000001": ["rs_yanglao"]},
        "health": {"M000000002": ["wj_chusheng"]}}


def test_missing_department_views_say_to_apply_the_grants(api_db, caplog):
    with caplog.at_level(logging.ERROR, logger="warehouse.serving"), api_db.connect() as conn:
        with pytest.raises(serving.DepartmentViewsMissing, match=r"dept_statistics.*run `hub grants apply`"):
            serving.persons_by_master_id(conn, "M000000001", ("sex",), department="statistics")
        with pytest.raises(serving.DepartmentViewsMissing, match=r"does not show phone.*hub grants apply"):
            serving.persons_by_master_id(conn, "M000000001", ("phone",), department="social_security")
    assert any("hub grants apply" in r.getMessage() for r in caplog.records)


def test_the_api_served_by_its_own_role_answers(api_db, warehouse):
    with warehouse.begin() as conn:
        departments = list(load_sharing())
        civil = create_key(conn, "civil_affairs", "roles test client", departments=departments)
        steward = create_key(conn, "civil_affairs", "roles test office", scopes=["steward"], departments=departments)
    server, thread, url = _serve(create_app(api_db, sharing=load_sharing(), rate_limit=RateLimit(per_second=100,
                                                                                                 burst=100)))
    try:
        with httpx.Client(base_url=url, timeout=10) as api:
            r = api.get("/v1/persons/M000000001", headers=_h(civil))
            assert r.status_code == 200, r.text
            person = r.json()["person"]
            assert person["master_id"] == "M000000001" and person["sources"] == ["mz_dibao"]
            assert [e["source"] for e in person["enrolments"]] == ["mz_dibao"]
            r = api.post("/v1/persons/search", headers=_h(civil, "核查"),
                         json={"id_number": PERSONS["M000000002"]["id_number"]})
            assert r.status_code == 200, r.text
            assert [p["master_id"] for p in r.json()["results"]] == ["M000000002"]
            [pair] = api.get("/v1/reviews", headers=_h(steward)).json()["reviews"]
            r = api.post(f"/v1/reviews/{pair['review_id']}/decision", headers=_h(steward),
                         json={"decision": "not_a_match", "reviewer": "刘科长"})
            assert r.status_code == 200 and r.json()["decision"] == "not_a_match", r.text
    finally:
        server.should_exit = True
        thread.join(5)
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT decision FROM mpi.review_pair")).scalar() == "not_a_match"
        logged = conn.execute(sa.text("SELECT endpoint, status FROM audit.access_log ORDER BY access_id")).all()
    assert [s for _, s in logged] == [200, 200, 200, 200]
