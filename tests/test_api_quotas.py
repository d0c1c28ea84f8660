"""No bulk copy through the read API, over real HTTP and a real warehouse: daily quotas shared by two
API processes, a sweep of sequential master ids blocks the key (and ``hub api-key unblock`` lifts it),
bad keys from one address are throttled without a row each, hostile input answers 4xx."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from hub.api import Quotas, RateLimit, create_app
from hub.api_keys import KeyBlocked, create_key, key_id_of, rotate_key, unblock_key, verify_key
from hub.errors import HubError
from schemas.id_number import check_character
from tests.helpers import empty_warehouse
from tests.test_api import _serve, _with_department_views
from warehouse import quotas

HUB = str(Path(sys.executable).with_name("hub"))
PERSONS = 30
FAST = RateLimit(per_second=1000, burst=1000)


def _mid(n: int) -> str:
    return f"M{n:09d}"


@pytest.fixture(scope="module")
def warehouse(engine):
    yield from published_persons(engine)


def published_persons(engine):
    """A published release of 30 synthetic persons M000000001 … M000000030 (invented names and numbers),
    read through the department views."""
    empty_warehouse(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO publish.release (release_no, master_count, record_count, content_hash,"
                             " validation_run_id) VALUES (1, :n, :n, 'test', 0)"), {"n": PERSONS})
        conn.execute(sa.text("INSERT INTO publish.current_release (release_no) VALUES (1)"))
        for n in range(1, PERSONS + 1):
            body = f"341522198001{n:02d}{n:03d}"[:17]
            conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) VALUES (:m, :a)"),
                         {"m": _mid(n), "a": f"rec:t/{n}"})
            conn.execute(sa.text(
                "INSERT INTO publish.master_person (release_no, master_id, name, id_number, id_number_status, sex,"
                " birth_date, status, record_count, sources) VALUES (1, :m, :name, :i, 'valid', 1,"
                " DATE '1980-01-01', 'alive', 1, ARRAY['mz_dibao'])"),
                {"m": _mid(n), "name": f"测试{n}", "i": body + check_character(body)})
    yield from _with_department_views(engine)  # the API reads persons through the department views


def _key(engine, department: str, label: str) -> str:
    with engine.begin() as conn:
        return create_key(conn, department, label)


@pytest.fixture
def servers(warehouse):
    """Start API processes on loopback ports; all stopped after the test."""
    started = []

    def start(**options):
        server, thread, url = _serve(create_app(warehouse, rate_limit=FAST, **options))
        started.append((server, thread))
        return httpx.Client(base_url=url, timeout=10)

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(5)


def _rows(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def _alerts(engine, kind: str, key: str | None = None, client: str | None = None) -> list[dict]:
    with engine.connect() as conn:
        return [a for a in quotas.alerts(conn, kind=kind)
                if (key is None or a["key_id"] == key_id_of(key)) and (client is None or a["client"] == client)]


# ---------------------------------------------------------------------------------------------- quotas

def test_two_api_processes_share_the_daily_quota_of_a_key(servers, warehouse):
    limits = Quotas(persons_per_key=3)
    first, second = servers(quotas=limits), servers(quotas=limits)
    key = _key(warehouse, "health", "quota test client")
    h = {"X-API-Key": key}
    assert [first.get(f"/v1/persons/{_mid(n)}", headers=h).status_code for n in (1, 2, 3)] == [200, 200, 200]
    refused = second.get(f"/v1/persons/{_mid(4)}", headers=h)
    assert refused.status_code == 429
    assert "daily quota" in refused.json()["detail"] and key_id_of(key) in refused.json()["detail"]
    assert "midnight (Asia/Shanghai)" in refused.json()["detail"]
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 86_400 and abs(wait - quotas.seconds_to_midnight()) < 60
    assert first.get(f"/v1/persons/{_mid(1)}", headers=h).status_code == 429  # the first process refuses too
    # counted once in the warehouse, alerted once for the key and the day, refusals logged
    usage = _rows(warehouse, "SELECT requests, persons FROM audit.api_quota WHERE scope = 'key' AND subject = :k",
                  k=key_id_of(key))
    assert usage == [{"requests": 5, "persons": 3}]
    assert len(_alerts(warehouse, "quota", key)) == 1
    statuses = [r["status"] for r in _rows(warehouse, "SELECT status FROM audit.access_log WHERE key_id = :k"
                                           " ORDER BY access_id", k=key_id_of(key))]
    assert statuses == [200, 200, 200, 429, 429]


def test_the_department_quota_holds_across_its_keys(servers, warehouse):
    api = servers(quotas=Quotas(persons_per_key=100, persons_per_department=4))
    one, two = _key(warehouse, "social_security", "team one"), _key(warehouse, "social_security", "team two")
    assert {api.get(f"/v1/persons/{_mid(n)}", headers={"X-API-Key": one}).status_code for n in (1, 2, 3)} == {200}
    assert api.get(f"/v1/persons/{_mid(4)}", headers={"X-API-Key": two}).status_code == 200
    refused = api.get(f"/v1/persons/{_mid(5)}", headers={"X-API-Key": two})
    assert refused.status_code == 429 and "department social_security" in refused.json()["detail"]
    assert [a["department"] for a in _alerts(warehouse, "quota", two)] == ["social_security"]


def _id_number(n: int) -> str:
    """The (invented) ID number of person n of :func:`published_persons`."""
    body = f"341522198001{n:02d}{n:03d}"[:17]
    return body + check_character(body)


def _check(api: httpx.Client, key: str, persons: range) -> httpx.Response:
    return api.post("/v1/persons/check", headers={"X-API-Key": key},
                    json={"items": [{"id_number": _id_number(n)} for n in persons]})


def _served(engine, key: str) -> int:
    """The persons the access log says the key was given (every answer with master ids)."""
    return _rows(engine, "SELECT coalesce(sum(cardinality(master_ids)), 0) AS n FROM audit.access_log"
                         " WHERE key_id = :k", k=key_id_of(key))[0]["n"]


def test_a_batch_check_cannot_overshoot_the_quota_across_two_processes(servers, warehouse):
    limits = Quotas(persons_per_key=50)
    first, second = servers(quotas=limits), servers(quotas=limits)
    key = _key(warehouse, "health", "batch quota client")
    assert _check(first, key, range(1, 31)).json()["counts"] == {"matched": 30}
    refused = _check(second, key, range(1, 31))  # 30 more would make 60: refused before anything is read
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert "may be given 20 more persons today (daily quota 50)" in detail and key_id_of(key) in detail
    assert "batch of at most 20 items" in detail and "nothing was looked up" in detail
    assert abs(int(refused.headers["Retry-After"]) - quotas.seconds_to_midnight()) < 60
    assert _check(first, key, range(11, 31)).json()["counts"] == {"matched": 20}  # what remains is served
    last = _check(second, key, range(1, 2))
    assert last.status_code == 429 and "daily quota" in last.json()["detail"]
    assert _served(warehouse, key) == 50
    usage = _rows(warehouse, "SELECT persons FROM audit.api_quota WHERE scope = 'key' AND subject = :k",
                  k=key_id_of(key))
    assert usage == [{"persons": 50}]
    assert len(_alerts(warehouse, "quota", key)) == 1


def test_what_a_batch_does_not_find_is_given_back(servers, warehouse):
    api = servers(quotas=Quotas(persons_per_key=12))
    key = _key(warehouse, "health", "unknown numbers client")
    bodies = [f"34152219800115{900 + i}" for i in range(10)]  # valid numbers of nobody published
    unknown = [{"id_number": b + check_character(b)} for b in bodies]
    for _ in range(3):  # 10 reserved each time, none used: each is given back
        answer = api.post("/v1/persons/check", headers={"X-API-Key": key}, json={"items": unknown})
        assert answer.json()["counts"] == {"not_found": 10}
    assert _check(api, key, range(1, 11)).json()["counts"] == {"matched": 10}
    assert _rows(warehouse, "SELECT persons FROM audit.api_quota WHERE scope = 'key' AND subject = :k",
                 k=key_id_of(key)) == [{"persons": 10}]


def test_concurrent_batches_in_two_processes_never_exceed_the_quota(servers, warehouse):
    limits = Quotas(persons_per_key=45, persons_per_department=10_000)
    apis = [servers(quotas=limits), servers(quotas=limits)]
    key = _key(warehouse, "health", "concurrent batch client")

    def one(i: int) -> int:
        return _check(apis[i % 2], key, range(1 + (i % 3) * 10, 11 + (i % 3) * 10)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(16)))
    assert statuses.count(200) == 4 and statuses.count(429) == 12  # 4 batches of 10 fit in 45, a fifth does not
    assert _served(warehouse, key) == 40


def test_the_department_quota_refuses_a_batch_larger_than_what_remains(servers, warehouse):
    api = servers(quotas=Quotas(persons_per_key=1000, persons_per_department=25))
    one = _key(warehouse, "civil_affairs", "team one")
    assert _check(api, one, range(1, 21)).status_code == 200
    refused = _check(api, _key(warehouse, "civil_affairs", "team two"), range(1, 11))
    assert refused.status_code == 429
    assert "the keys of department civil_affairs may be given 5 more persons today" in refused.json()["detail"]
    usage = _rows(warehouse, "SELECT persons FROM audit.api_quota WHERE scope = 'department' AND subject ="
                             " 'civil_affairs'")
    assert usage == [{"persons": 20}]  # the refused key's reservation was rolled back at both levels


def test_quotas_are_checked_when_configured():
    with pytest.raises(ValueError, match="persons_per_key"):
        Quotas(persons_per_key=0)
    with pytest.raises(ValueError, match="sweep_window"):
        Quotas(sweep_window=0)
    # midnight in Asia/Shanghai is 16:00 UTC
    assert quotas.seconds_to_midnight(dt.datetime(2026, 12, 6, 15, 59, 30, tzinfo=dt.UTC)) == 30
    assert quotas.seconds_to_midnight(dt.datetime(2026, 12, 6, 16, 0, 0, tzinfo=dt.UTC)) == 86_400


# ---------------------------------------------------------------------------------------------- sweeps

def test_a_sweep_of_sequential_master_ids_blocks_the_key_until_unblocked(servers, warehouse):
    api = servers(quotas=Quotas(sweep_ids=20, persons_per_key=1000))
    key = _key(warehouse, "civil_affairs", "sweeping client")
    h = {"X-API-Key": key}
    answers = [api.get(f"/v1/persons/{_mid(n)}", headers=h) for n in range(1, 26)]
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 20 + [403] * 5  # stopped at the 21st distinct id
    detail = answers[20].json()["detail"]
    assert "blocked" in detail and f"hub api-key unblock {key_id_of(key)}" in detail
    # blocked for every request now, not only look-ups by master id, and from any process
    assert api.post("/v1/persons/search", headers=h, json={"id_number": "110101199003077777"}).status_code == 403
    other = servers(quotas=Quotas(sweep_ids=20))
    assert other.get(f"/v1/persons/{_mid(1)}", headers=h).status_code == 403
    [alert] = _alerts(warehouse, "sweep", key)
    assert alert["department"] == "civil_affairs" and "21 distinct master ids" in alert["detail"]
    served = _rows(warehouse, "SELECT persons FROM audit.api_quota WHERE scope = 'key' AND subject = :k",
                   k=key_id_of(key))
    assert served == [{"persons": 20}]
    with warehouse.connect() as conn:
        with pytest.raises(KeyBlocked, match="hub api-key unblock"):
            verify_key(conn, key)
        with pytest.raises(HubError, match="is blocked"):
            rotate_key(conn, key_id_of(key))
    # refusals are logged with the key
    assert _rows(warehouse, "SELECT count(*) AS n FROM audit.access_log WHERE key_id = :k AND status = 403",
                 k=key_id_of(key)) == [{"n": 7}]

    done = subprocess.run([HUB, "api-key", "unblock", key_id_of(key)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"unblocked {key_id_of(key)}" in done.stdout
    again = subprocess.run([HUB, "api-key", "unblock", key_id_of(key)], capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "is not blocked" in again.stdout + again.stderr
    # unblocked: it reads again, and sweep detection counts afresh from the unblocking
    assert api.get(f"/v1/persons/{_mid(26)}", headers=h).status_code == 200
    assert len(_alerts(warehouse, "unblocked", key)) == 1


def test_looking_up_the_same_persons_again_is_no_sweep(servers, warehouse):
    api = servers(quotas=Quotas(sweep_ids=5, persons_per_key=1000))
    key = _key(warehouse, "civil_affairs", "busy but honest client")
    statuses = {api.get(f"/v1/persons/{_mid(1 + n % 5)}", headers={"X-API-Key": key}).status_code for n in range(30)}
    assert statuses == {200}
    with warehouse.connect() as conn:
        assert verify_key(conn, key) is not None
        with pytest.raises(HubError, match="not blocked"):
            unblock_key(conn, key_id_of(key))


# ---------------------------------------------------------------------------------------------- bad keys

def test_bad_keys_from_one_address_are_throttled_and_the_attack_stays_visible(servers, warehouse):
    limit = 20
    base = servers(quotas=Quotas(bad_keys_per_minute=limit)).base_url
    client = httpx.Client(base_url=base, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    statuses = [client.get(f"/v1/persons/{_mid(1)}", headers={"X-API-Key": f"ak_{n:012x}.guess"}).status_code
                for n in range(500)]
    assert statuses[:limit] == [401] * limit
    assert statuses.count(429) >= 500 - 2 * limit  # (a minute may turn during the test)
    rows = _rows(warehouse, "SELECT status FROM audit.access_log WHERE client = '127.0.0.2'")
    assert limit <= len(rows) <= 2 * limit and {r["status"] for r in rows} == {401}
    alerts = _alerts(warehouse, "bad_keys", client="127.0.0.2")
    assert 1 <= len(alerts) <= 2 and "127.0.0.2" in alerts[0]["detail"]
    counted = _rows(warehouse, "SELECT sum(requests) AS n FROM audit.api_quota WHERE scope = 'client'"
                               " AND subject LIKE '127.0.0.2 %'")
    assert counted == [{"n": 500}]
    # a good key from the same address still reads
    key = _key(warehouse, "civil_affairs", "same office, right key")
    assert client.get(f"/v1/persons/{_mid(1)}", headers={"X-API-Key": key}).status_code == 200
    throttled = client.get(f"/v1/persons/{_mid(1)}")
    assert throttled.status_code == 429 and "Retry-After" in throttled.headers
    client.close()


# ---------------------------------------------------------------------------------------------- hostile input

def test_hostile_input_answers_4xx_and_is_logged_without_it(servers, warehouse):
    api = servers(quotas=Quotas())
    key = _key(warehouse, "civil_affairs", "fuzzing client")
    with warehouse.begin() as conn:
        steward = create_key(conn, "civil_affairs", "data office", scopes=["steward"])
    h = {"X-API-Key": key}
    before = _rows(warehouse, "SELECT coalesce(max(access_id), 0) AS n FROM audit.access_log")[0]["n"]
    answers = {
        "body": api.post("/v1/persons/search", headers=h, json={"id_number": "11010119900307\u00007777"}),
        "raw body": api.post("/v1/persons/search", headers={**h, "Content-Type": "application/json"},
                             content=b'{"id_number": "1101\x00"}'),
        "path": api.get("/v1/persons/M0000%000001", headers=h),
        "query": api.get("/v1/reviews?status=open%00", headers={"X-API-Key": steward}),
        "header": api.get(f"/v1/persons/{_mid(1)}", headers={**h, "X-Purpose": "%00"}),
        "huge number": api.get("/v1/reviews/99999999999999999999999", headers={"X-API-Key": steward}),
        "wrong type": api.post("/v1/persons/search", headers={**h, "Content-Type": "text/plain"}, content=b"hello"),
        "not json": api.post("/v1/persons/check", headers={**h, "Content-Type": "application/json"}, content=b"{"),
    }
    for what, r in answers.items():
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
    for what in ("body", "raw body", "path", "query", "header"):
        assert answers[what].status_code == 400 and "NUL character" in answers[what].json()["detail"], what
    escaped = api.post("/v1/persons/search", headers=h, json={"id_number": "a\\u0000b"})  # text, not a NUL
    assert escaped.status_code == 422 and "NUL" not in escaped.text
    rows = _rows(warehouse, "SELECT * FROM audit.access_log WHERE access_id > :b ORDER BY access_id", b=before)
    assert len(rows) == len(answers) + 1
    assert not any("\x00" in str(v) for r in rows for v in r.values())


def test_a_blocked_key_that_keeps_asking_is_throttled_like_a_bad_one(servers, warehouse):
    base = servers(quotas=Quotas(bad_keys_per_minute=5)).base_url
    key = _key(warehouse, "health", "blocked and insistent")
    with warehouse.begin() as conn:
        assert quotas.block_key(conn, key_id_of(key), "blocked by hand for the test")
        assert not quotas.block_key(conn, key_id_of(key), "twice")
    with httpx.Client(base_url=base, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.3")) as client:
        answers = [client.get(f"/v1/persons/{_mid(1)}", headers={"X-API-Key": key}) for _ in range(30)]
    assert [a.status_code for a in answers[:5]] == [403] * 5
    assert "blocked by hand for the test" in answers[0].json()["detail"]
    assert sum(a.status_code == 429 for a in answers) >= 20
    rows = _rows(warehouse, "SELECT status, key_id FROM audit.access_log WHERE client = '127.0.0.3'")
    assert 5 <= len(rows) <= 10 and {(r["status"], r["key_id"]) for r in rows} == {(403, key_id_of(key))}


def test_refusals_of_a_body_say_what_the_route_takes(servers, warehouse):
    api = servers(quotas=Quotas(), max_batch=5)
    h = {"X-API-Key": _key(warehouse, "health", "careless client")}
    big = {"id_number": "1" * 30, "purpose": "x" * 20_000}
    too_big = api.post("/v1/persons/search", headers=h, json=big).json()["detail"]
    assert "a search holds one ID number" in too_big and "batch" not in too_big
    batch = api.post("/v1/persons/check", headers=h, json={"items": [], "purpose": "x" * 20_000}).json()["detail"]
    assert "a batch check holds at most 5 items" in batch
    named = api.post("/v1/persons/search", headers=h, json={"id_number": _id_number(1), "name": "测试1"})
    assert named.status_code == 422
    [error] = named.json()["detail"]
    assert error["loc"] == ["body", "name"] and error["msg"].startswith("search is by ID number only")
    assert "Extra inputs" not in named.text and "测试1" not in named.text
    made_up = api.post("/v1/persons/check", headers=h, json={"items": [], _id_number(2): 1})
    assert made_up.status_code == 422 and _id_number(2) not in made_up.text  # a made-up field name is not echoed
    assert made_up.json()["detail"][0]["msg"].startswith("a batch check holds `items`")


NOLOG_ROLE = "hub_test_cannot_log"


def test_a_failed_access_log_write_names_the_databases_cause(servers, warehouse, caplog):
    """The API's role lost INSERT on audit.access_log: 503, and the serve log says why, without values."""
    with warehouse.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {NOLOG_ROLE}"))
        conn.execute(sa.text(f"CREATE ROLE {NOLOG_ROLE}"))
        conn.execute(sa.text(f"GRANT USAGE ON SCHEMA audit TO {NOLOG_ROLE}"))
        conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA audit TO {NOLOG_ROLE}"))
        conn.execute(sa.text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA audit TO {NOLOG_ROLE}"))
        conn.execute(sa.text(f"REVOKE INSERT ON audit.access_log FROM {NOLOG_ROLE}"))
    engine = sa.create_engine(warehouse.url, poolclass=sa.pool.NullPool)
    sa.event.listen(engine, "connect", lambda dbapi, _: dbapi.cursor().execute(f"SET ROLE {NOLOG_ROLE}"))
    try:
        server, thread, url = _serve(create_app(engine, rate_limit=FAST, quotas=Quotas()))
        key = _key(warehouse, "health", "unlogged client")
        with caplog.at_level("ERROR", logger="hub.api"), httpx.Client(base_url=url, timeout=10) as api:
            answer = api.get("/v1/purposes", headers={"X-API-Key": key})
        server.should_exit = True
        thread.join(5)
        assert answer.status_code == 503 and "could not be logged" in answer.json()["detail"]
        [line] = [r.getMessage() for r in caplog.records if "access log write failed" in r.getMessage()]
        assert "ProgrammingError (SQL state 42501: permission denied for table access_log)" in line
        assert key_id_of(key) not in line and "INSERT" not in line  # neither parameters nor the statement
    finally:
        engine.dispose()
        with warehouse.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {NOLOG_ROLE}"))
            conn.execute(sa.text(f"DROP ROLE {NOLOG_ROLE}"))
