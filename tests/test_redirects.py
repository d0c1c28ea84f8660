"""Redirects everywhere: a master id retired by a merge answers with its survivor — in each department's
``master_id_redirect`` view (read as the department's role) and in the read API over real HTTP (connected
as the API's own database role) — for the ids a release published, resolved to the current release's
survivor, a chain of two merges included.

The releases are made by the hub's own ``publish`` over a small index whose merges are crafted in ``mpi``
(as a matching run leaves them: the retired id redirected one hop to its survivor, its golden record gone).
"""

from __future__ import annotations

import secrets

import httpx
import pytest
import sqlalchemy as sa

from hub.api import RateLimit, create_app
from hub.api_db import api_engine
from hub.api_keys import create_key
from tests.helpers import empty_warehouse
from tests.test_api import _serve
from warehouse.grants import apply_grants, drop_grants
from warehouse.releases import content_hash, publish, rollback
from warehouse.sharing import NOT_SHARED, DepartmentSharing, load_sharing

MASTERS = ("M000000001", "M000000002", "M000000003", "M000000004")
NEVER_PUBLISHED = "M000000009"  # minted and merged away between two releases: no department saw it


def _sharing() -> dict[str, DepartmentSharing]:
    """The real configuration, plus a department with whom master ids are not shared."""
    sharing = load_sharing()
    classes = dict(sharing["social_security"].classes, master_id=NOT_SHARED)
    sharing["statistics"] = DepartmentSharing("statistics", "统计 statistics", classes, True)
    return sharing


def _publish(conn: sa.Connection) -> int:
    """Publish the index as it stands, through a gate run recorded for exactly this content."""
    run_id = conn.execute(sa.text(
        "INSERT INTO audit.validation_run (suite, started_at, success, evaluated, successful, failed, content_hash)"
        " VALUES ('crafted', now(), true, 0, 0, 0, :h) RETURNING run_id"), {"h": content_hash(conn, None)}).scalar_one()
    outcome = publish(conn, run_id)
    assert outcome.outcome == "published", outcome
    return outcome.release_no


def _merge(conn: sa.Connection, retired: str, survivor: str) -> None:
    """Merge ``retired`` into ``survivor`` as a matching run does: redirects kept one hop."""
    conn.execute(sa.text("UPDATE mpi.master SET status = 'retired', retired_into = :s, retired_at = now()"
                         " WHERE master_id = :r"), {"r": retired, "s": survivor})
    conn.execute(sa.text("UPDATE mpi.master SET retired_into = :s WHERE retired_into = :r"),
                 {"r": retired, "s": survivor})
    conn.execute(sa.text("UPDATE mpi.golden SET record_count = record_count + 1 WHERE master_id = :s"), {"s": survivor})
    conn.execute(sa.text("DELETE FROM mpi.golden WHERE master_id = :r"), {"r": retired})


@pytest.fixture(scope="module")
def index(engine):
    """Release 1: four masters. Release 2: M2 merged into M1 (and M9, never published, into M1).
    Release 3: M1 merged into M3 — a chain: M2 → M1 → M3."""
    empty_warehouse(engine)
    prefix = f"hub_t{secrets.token_hex(4)}_"
    with engine.begin() as conn:
        for i, m in enumerate(MASTERS, 1):
            conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) VALUES (:m, :a)"), {"m": m, "a": f"rec:t/{m}"})
            conn.execute(sa.text(
                "INSERT INTO mpi.golden (master_id, id_number_status, sex, birth_date, record_count, sources, status,"
                " conflicts) VALUES (:m, 'missing', :s, make_date(1950 + :i, 1, 1), 1, ARRAY['mz_dibao'], 'alive', 0)"),
                {"m": m, "s": 1 + i % 2, "i": i})
        releases = [_publish(conn)]
        _merge(conn, "M000000002", "M000000001")
        conn.execute(sa.text("INSERT INTO mpi.master (master_id, status, retired_into) VALUES (:m, 'retired', :s)"),
                     {"m": NEVER_PUBLISHED, "s": "M000000001"})
        releases.append(_publish(conn))
    with engine.begin() as conn:
        apply_grants(conn, _sharing(), role_prefix=prefix)
    try:
        yield {"engine": engine, "prefix": prefix, "releases": releases}
    finally:
        with engine.begin() as conn:
            drop_grants(conn, role_prefix=prefix)
            conn.exec_driver_sql("ALTER TABLE publish.enrolment DISABLE ROW LEVEL SECURITY")


def _view(index, department: str) -> dict[str, str]:
    """The department's redirect view, read as the department's own role."""
    with index["engine"].connect() as conn:
        conn.exec_driver_sql(f'SET LOCAL ROLE "{index["prefix"]}dept_{department}"')
        rows = conn.exec_driver_sql(f"SELECT retired_id, survivor_id, release_no FROM dept_{department}"
                                    ".master_id_redirect").all()
    current = _current(index)
    assert {r.release_no for r in rows} <= {current}
    return {r.retired_id: r.survivor_id for r in rows}


def _current(index) -> int:
    with index["engine"].connect() as conn:
        return conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()


@pytest.fixture(scope="module")
def api(index, database_url):
    """The read API on loopback, connected as its own database role (not a superuser)."""
    departments = list(_sharing())
    with index["engine"].begin() as conn:
        keys = {d: create_key(conn, d, f"{d} test client", departments=departments)
                for d in ("civil_affairs", "health", "social_security", "statistics")}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HUB_API_DATABASE_URL", raising=False)
        as_api = api_engine(database_url, role_prefix=index["prefix"])
    server, thread, url = _serve(create_app(as_api, sharing=_sharing(),
                                            rate_limit=RateLimit(per_second=100, burst=500)))
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client, keys
    server.should_exit = True
    thread.join(5)
    as_api.dispose()


def _person(api, department: str, master_id: str) -> tuple[int, dict]:
    client, keys = api
    r = client.get(f"/v1/persons/{master_id}", headers={"X-API-Key": keys[department]})
    return r.status_code, r.json()


def test_a_merge_redirects_in_every_department_view_and_the_api(index, api):
    assert _current(index) == index["releases"][1]
    for department in ("civil_affairs", "health", "social_security"):
        # the id no release published is not there: no department can hold it
        assert _view(index, department) == {"M000000002": "M000000001"}
        status, body = _person(api, department, "M000000002")
        assert status == 200, body
        assert body["person"]["master_id"] == "M000000001" and body["redirected_from"] == ["M000000002"]
    assert _view(index, "statistics") == {}  # master ids are not shared with it: nothing to redirect
    assert _person(api, "statistics", "M000000002")[0] == 404
    with index["engine"].connect() as conn:
        barrier = conn.execute(sa.text(
            "SELECT n.nspname, 'security_barrier=true' = ANY(c.reloptions) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'master_id_redirect'"
            " AND n.nspname LIKE 'dept\\_%'")).all()
        # the department reads the view, never the release rows behind it (model, batches, other ids)
        conn.exec_driver_sql(f'SET LOCAL ROLE "{index["prefix"]}dept_health"')
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.exec_driver_sql("SELECT ran_with FROM publish.release").all()
    assert {n for n, _ in barrier} == {f"dept_{d}" for d in _sharing()} and all(b for _, b in barrier)


def test_a_chain_of_two_merges_resolves_to_the_last_survivor(index, api):
    engine = index["engine"]
    with engine.begin() as conn:
        _merge(conn, "M000000001", "M000000003")
        third = _publish(conn)
    expected = {"M000000001": "M000000003", "M000000002": "M000000003"}
    for department in ("civil_affairs", "health", "social_security"):
        assert _view(index, department) == expected
        for retired in expected:
            status, body = _person(api, department, retired)
            assert status == 200 and body["person"]["master_id"] == "M000000003", body
            assert body["requested_master_id"] == retired and body["release_no"] == third
        assert _person(api, department, NEVER_PUBLISHED)[0] == 404  # no release published it
    with engine.connect() as conn:
        logged = conn.execute(sa.text(
            "SELECT endpoint, master_ids FROM audit.access_log WHERE endpoint = 'GET /v1/persons/M000000002'"
            " ORDER BY access_id DESC LIMIT 1")).one()
    assert logged.master_ids == ["M000000003"]  # the access log names the person answered

    # a merge the index made after the current release: lookups answer with the current release's person
    with engine.begin() as conn:
        _merge(conn, "M000000003", "M000000004")
    try:
        assert _view(index, "civil_affairs") == expected
        status, body = _person(api, "civil_affairs", "M000000002")
        assert status == 200 and body["person"]["master_id"] == "M000000003"
        assert _person(api, "civil_affairs", "M000000003")[1]["redirected_from"] == []
    finally:  # back to the published state for the next test
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE mpi.master SET status = 'active', retired_into = NULL, retired_at = NULL"
                                 " WHERE master_id = 'M000000003'"))
            conn.execute(sa.text("UPDATE mpi.master SET retired_into = 'M000000003' WHERE retired_into = 'M000000004'"))
            columns = "master_id, id_number_status, sex, birth_date, record_count, sources, status, conflicts"
            conn.execute(sa.text(f"INSERT INTO mpi.golden ({columns}) SELECT {columns}"
                                 " FROM publish.master_person_current WHERE master_id = 'M000000003'"))


def test_a_rollback_brings_back_the_redirects_of_the_release_it_returns_to(index, api):
    second = index["releases"][1]
    with index["engine"].begin() as conn:
        rollback(conn, second, reason="test: the third release was wrong")
    assert _view(index, "civil_affairs") == {"M000000002": "M000000001"}
    status, body = _person(api, "civil_affairs", "M000000002")
    assert status == 200 and body["person"]["master_id"] == "M000000001" and body["release_no"] == second
    # M1 is a person of release 2 again, not a redirect
    assert _person(api, "civil_affairs", "M000000001")[1]["redirected_from"] == []
