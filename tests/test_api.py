"""The read API over real HTTP (uvicorn on loopback) and a real warehouse: keys, sharing, purposes,
no enumeration, batch checks, rate limits, redirects, the review queue and the access log."""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
import urllib.parse

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from hub.api import RateLimit, TokenBuckets, create_app
from hub.api_keys import create_key, key_id_of, list_keys, revoke_key, rotate_key, verify_key
from hub.errors import HubError
from schemas.id_number import check_character
from tests.helpers import empty_warehouse
from warehouse.grants import apply_grants, drop_grants
from warehouse.sharing import NOT_SHARED, PUBLISHED_FIELDS, DepartmentSharing, load_sharing

MAX_BATCH = 5


def _id(body17: str) -> str:
    return body17 + check_character(body17)


# synthetic residents: valid-format fake numbers, invented names
PERSONS = {
    "M000000001": dict(name="张伟", id_number=_id("34152219800101001"), sex=1, birth_date="1980-01-01",
                       phone="13800000001", address="幸福村3组12号", status="alive"),
    "M000000002": dict(name="王芳", id_number=_id("34152219900215002"), sex=2, birth_date="1990-02-15",
                       phone="13800000002", address="和平村1组5号", status="alive"),
    "M000000005": dict(name="李娜", id_number=_id("34152219520707004"), sex=2, birth_date="1952-07-07",
                       phone="13800000005", address="和平村2组8号", status="deceased"),
}
ALL_IDS = [p["id_number"] for p in PERSONS.values()]
ALL_NAMES = [p["name"] for p in PERSONS.values()]
UNKNOWN_ID = _id("34152219800101011")  # valid format, nobody holds it


def _sharing() -> dict[str, DepartmentSharing]:
    """The real configuration, plus a department with whom neither names nor ID numbers are shared."""
    sharing = load_sharing()
    classes = dict(sharing["social_security"].classes, id_number=NOT_SHARED, name=NOT_SHARED)
    sharing["statistics"] = DepartmentSharing("statistics", "统计 statistics", classes, True)
    return sharing


@pytest.fixture(scope="module")
def warehouse(engine):
    """A small published release: three persons, two retired ids (a chain), enrolments, a review pair."""
    empty_warehouse(engine)
    with engine.begin() as conn:
        for m in ("M000000001", "M000000002", "M000000005"):
            conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) VALUES (:m, :a)"),
                         {"m": m, "a": f"rec:t/{m}"})
        conn.execute(sa.text("INSERT INTO mpi.master (master_id, status, retired_into) VALUES"
                             " ('M000000003', 'retired', 'M000000001'), ('M000000004', 'retired', 'M000000003')"))
        conn.execute(sa.text("INSERT INTO publish.release (release_no, master_count, record_count, content_hash,"
                             " validation_run_id) VALUES (1, 3, 4, 'test', 0)"))
        conn.execute(sa.text("INSERT INTO publish.current_release (release_no) VALUES (1)"))
        for m, p in PERSONS.items():
            conn.execute(sa.text(
                "INSERT INTO publish.master_person (release_no, master_id, name, id_number, id_number_status, sex,"
                " birth_date, phone, address, status, record_count, sources)"
                " VALUES (1, :m, :name, :id_number, 'valid', :sex, CAST(:birth_date AS date), :phone, :address,"
                " :status, 1, ARRAY['mz_dibao'])"), dict(p, m=m))
        conn.execute(sa.text(
            "INSERT INTO publish.enrolment (release_no, master_id, source, source_record_id, department, program,"
            " status_raw) VALUES (1, 'M000000001', 'mz_dibao', 'D-1', 'civil_affairs', 'dibao', '在保'),"
            " (1, 'M000000001', 'rs_yanglao', 'Y-1', 'social_security', 'pension', '正常'),"
            " (1, 'M000000002', 'wj_chusheng', 'C-1', 'health', 'birth', '登记')"))
        # a review pair between two standardized records (their names and numbers leave masked)
        conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES ('mz_dibao')"))
        for rid, m in (("D-1", "M000000001"), ("D-2", "M000000002")):
            p = PERSONS[m]
            raw_id = conn.execute(sa.text(
                "INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)"
                " VALUES ('mz_dibao', :r, 'h', '{}', 1, now()) RETURNING record_id"), {"r": rid}).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO std.resident (source, source_record_id, raw_record_id, batch_id, name, name_status,"
                " id_number, id_number_status, phone) VALUES ('mz_dibao', :r, :raw, 1, :n, 'valid', :i, 'valid', :ph)"),
                {"r": rid, "raw": raw_id, "n": p["name"], "i": p["id_number"], "ph": p["phone"]})
            conn.execute(sa.text("INSERT INTO mpi.crosswalk (source, source_record_id, master_id, match_rule)"
                                 " VALUES ('mz_dibao', :r, :m, 'test')"), {"r": rid, "m": m})
        conn.execute(sa.text(
            "INSERT INTO mpi.review_pair (record_key_l, record_key_r, match_probability, match_weight, review_reason,"
            " evidence) VALUES ('mz_dibao/D-1', 'mz_dibao/D-2', 0.6, 0.5, 'grey_zone', '{\"mw_name\": -1.5}')"))
    yield from _with_department_views(engine)


def _with_department_views(engine):
    """Apply the department roles and views (the API reads persons through them), under a role prefix of
    this test module's own; dropped again afterwards."""
    prefix = f"hub_t{secrets.token_hex(4)}_"
    with engine.begin() as conn:
        apply_grants(conn, _sharing(), role_prefix=prefix)
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            drop_grants(conn, role_prefix=prefix)
            conn.exec_driver_sql("ALTER TABLE publish.enrolment DISABLE ROW LEVEL SECURITY")


@pytest.fixture(scope="module")
def keys(warehouse):
    departments = list(_sharing())
    with warehouse.begin() as conn:
        out = {d: create_key(conn, d, f"{d} test client", departments=departments)
               for d in ("civil_affairs", "social_security", "statistics")}
        out["steward"] = create_key(conn, "civil_affairs", "data office", scopes=["steward"], departments=departments)
        out["revoked"] = create_key(conn, "health", "old client", departments=departments)
        out["limited"] = create_key(conn, "health", "rate-limited client", departments=departments)
        revoke_key(conn, key_id_of(out["revoked"]))
    return out


def _serve(app):
    """uvicorn on a free loopback port in a thread; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def api(warehouse, keys):
    server, thread, url = _serve(create_app(warehouse, sharing=_sharing(), max_batch=MAX_BATCH,
                                            rate_limit=RateLimit(per_second=100, burst=500)))
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def limited_api(warehouse, keys):
    server, thread, url = _serve(create_app(warehouse, sharing=_sharing(), max_batch=MAX_BATCH,
                                            rate_limit=RateLimit(per_second=0.2, burst=3, batch_items_per_token=2)))
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client
    server.should_exit = True
    thread.join(5)


def _h(key: str, purpose: str | None = None) -> dict[str, str]:
    headers = {"X-API-Key": key}
    if purpose:
        headers["X-Purpose"] = urllib.parse.quote(purpose)
    return headers


def _log(engine, key: str | None = None, since: int = 0) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT * FROM audit.access_log WHERE access_id > :s AND (CAST(:k AS text) IS NULL OR key_id = :k)"
            " ORDER BY access_id"), {"s": since, "k": key_id_of(key) if key else None}).mappings().all()
    return [dict(r) for r in rows]


def _last_access_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT coalesce(max(access_id), 0) FROM audit.access_log")).scalar_one()


def _full_ids_in(payload) -> set[str]:
    text = json.dumps(payload, ensure_ascii=False)
    return {i for i in ALL_IDS if i in text}


# ---------------------------------------------------------------------------------------------- spec and health

def test_openapi_lists_the_endpoints_and_no_id_number_in_a_url(api):
    spec = api.get("/openapi.json").json()
    assert {"/v1/persons/{master_id}", "/v1/persons/search", "/v1/persons/check", "/v1/reviews",
            "/v1/reviews/{review_id}", "/v1/reviews/{review_id}/decision", "/healthz"} <= set(spec["paths"])
    assert "X-API-Key" in json.dumps(spec["components"]["securitySchemes"])
    for path, operations in spec["paths"].items():
        assert "id_number" not in path
        for op in operations.values():
            assert op.get("summary") or op.get("description"), path
            for param in op.get("parameters", []):
                if param["in"] in ("path", "query"):
                    assert "id_number" not in param["name"].lower() and "id" != param["name"].lower(), (path, param)
    search = spec["paths"]["/v1/persons/search"]["post"]
    assert "requestBody" in search


def test_healthz_needs_no_key_and_holds_no_data(api, warehouse):
    before = _last_access_id(warehouse)
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert _last_access_id(warehouse) == before  # outside /v1: nothing to log


# ---------------------------------------------------------------------------------------------- keys

def test_missing_unknown_and_revoked_keys_answer_alike_and_are_logged(api, keys, warehouse):
    before = _last_access_id(warehouse)
    forged = key_id_of(keys["civil_affairs"]) + ".not-the-secret"
    answers = [api.get("/v1/persons/M000000001"),
               api.get("/v1/persons/M000000001", headers=_h("ak_000000000000.whatever")),
               api.get("/v1/persons/M000000001", headers=_h(forged)),
               api.get("/v1/persons/M000000001", headers=_h(keys["revoked"])),
               api.post("/v1/persons/search", headers=_h(keys["revoked"]), json={"id_number": ALL_IDS[0]})]
    assert {r.status_code for r in answers} == {401}
    assert len({r.text for r in answers}) == 1
    rows = _log(warehouse, since=before)
    assert len(rows) == 5 and {r["status"] for r in rows} == {401}
    assert {r["key_id"] for r in rows} == {None} and {r["client"] for r in rows} == {"127.0.0.1"}


def test_key_helpers_store_only_a_hash_and_rotate(warehouse):
    with warehouse.begin() as conn:
        key = create_key(conn, "health", "rotation test", scopes=["steward"])
        stored = conn.execute(sa.text("SELECT key_hash, label FROM audit.api_key WHERE key_id = :k"),
                              {"k": key_id_of(key)}).one()
        assert key not in stored.key_hash and key.split(".")[1] not in stored.key_hash
        assert stored.key_hash.startswith("sha256:")
        found = verify_key(conn, key)
        assert found.department == "health" and found.scopes == {"steward"} and found.label == "rotation test"
        assert verify_key(conn, key + "x") is None and verify_key(conn, "") is None
        new = rotate_key(conn, key_id_of(key))
        assert verify_key(conn, key) is None and verify_key(conn, new).scopes == {"steward"}
        listed = {k["key_id"]: k for k in list_keys(conn, include_revoked=True)}
        assert listed[key_id_of(new)]["scopes"] == ["steward"] and listed[key_id_of(key)]["revoked_at"]
        assert "key_hash" not in listed[key_id_of(new)]
        with pytest.raises(HubError, match="unknown department"):
            create_key(conn, "tax_bureau", "x")
        with pytest.raises(HubError, match="already revoked"):
            revoke_key(conn, key_id_of(key))


# ---------------------------------------------------------------------------------------------- sharing and purposes

def test_fields_are_cut_to_the_department(api, keys):
    civil = api.get("/v1/persons/M000000001", headers=_h(keys["civil_affairs"], "mz-dibao-review")).json()["person"]
    social = api.get("/v1/persons/M000000001", headers=_h(keys["social_security"], "rs-pension-qualification")).json()["person"]
    assert civil["phone"] == PERSONS["M000000001"]["phone"] and civil["address"] == PERSONS["M000000001"]["address"]
    assert "phone" not in social and "address" not in social  # 不予共享 for social security
    assert social["name"] == "张伟" and social["id_number"] == PERSONS["M000000001"]["id_number"]
    # each department sees its own enrolments only
    assert [e["source"] for e in civil["enrolments"]] == ["mz_dibao"]
    assert [e["source"] for e in social["enrolments"]] == ["rs_yanglao"]


def test_conditional_fields_need_a_purpose(api, keys, warehouse):
    before = _last_access_id(warehouse)
    bare = api.get("/v1/persons/M000000001", headers=_h(keys["civil_affairs"])).json()
    assert set(bare["withheld"]) == {"name", "id_number", "birth_date", "phone", "address"}
    # conflicts counts disagreements with other departments' records: not for a department seeing its own only
    assert set(bare["person"]) == {"master_id", "id_number_status", "sex", "status", "status_date",
                                   "record_count", "sources", "enrolments"}
    purpose = "mz-dibao-review"
    full = api.get("/v1/persons/M000000001", headers=_h(keys["civil_affairs"], purpose)).json()
    assert full["withheld"] == [] and full["person"]["name"] == "张伟"
    found = api.post("/v1/persons/search", headers=_h(keys["social_security"]),
                     json={"id_number": ALL_IDS[0]}).json()
    assert "name" not in found["results"][0] and "id_number" not in found["results"][0]
    with_body_purpose = api.post("/v1/persons/search", headers=_h(keys["social_security"]),
                                 json={"id_number": ALL_IDS[0], "purpose": "rs-pension-qualification"}).json()
    assert with_body_purpose["results"][0]["birth_date"] == "1980-01-01"
    assert [r["purpose"] for r in _log(warehouse, since=before)] == [None, purpose, None, "rs-pension-qualification"]


def test_retired_ids_answer_with_their_survivor(api, keys):
    r = api.get("/v1/persons/M000000004", headers=_h(keys["civil_affairs"]))
    assert r.status_code == 200
    body = r.json()
    assert body["person"]["master_id"] == "M000000001" and body["requested_master_id"] == "M000000004"
    assert body["redirected_from"] == ["M000000004", "M000000003"]
    direct = api.get("/v1/persons/M000000001", headers=_h(keys["civil_affairs"])).json()
    assert direct["redirected_from"] == []


# ---------------------------------------------------------------------------------------------- no enumeration

def test_unknown_and_forbidden_look_the_same(api, keys):
    civil, stats = _h(keys["civil_affairs"], "核查"), _h(keys["statistics"], "核查")
    answers = [
        api.get("/v1/persons/M999999999", headers=civil),                       # unknown master id
        api.get("/v1/persons/" + urllib.parse.quote("张伟"), headers=civil),      # not a master id at all
        api.post("/v1/persons/search", headers=civil, json={"id_number": UNKNOWN_ID}),  # unknown ID number
        api.post("/v1/persons/search", headers=stats, json={"id_number": ALL_IDS[0]}),  # exists, but forbidden
        api.get("/v1/reviews/1", headers=civil),                                # review exists, not a steward
        api.get("/v1/reviews/999", headers=civil),
        api.get("/v1/no-such-thing", headers=civil),
    ]
    assert [r.status_code for r in answers] == [404] * len(answers)
    assert {r.text for r in answers} == {'{"detail":"not found"}'}
    # the forbidden department's batch check: the same answer as for numbers nobody holds
    checked = api.post("/v1/persons/check", headers=stats, json={"items": [{"id_number": ALL_IDS[0]},
                                                                           {"id_number": UNKNOWN_ID}]}).json()
    assert [r["match"] for r in checked["results"]] == ["not_found", "not_found"] and checked["release_no"] == 1


def test_search_standardizes_and_never_echoes_a_bad_number(api, keys):
    headers = _h(keys["civil_affairs"], "核查")
    wanted = PERSONS["M000000001"]["id_number"]
    for sent in (wanted, wanted.lower(), " " + wanted.translate(str.maketrans("0123456789", "０１２３４５６７８９"))):
        r = api.post("/v1/persons/search", headers=headers, json={"id_number": sent})
        assert r.status_code == 200 and [p["master_id"] for p in r.json()["results"]] == ["M000000001"]
    bad = wanted[:-1] + ("0" if wanted[-1] != "0" else "1")
    r = api.post("/v1/persons/search", headers=headers, json={"id_number": bad})
    assert r.status_code == 422 and "checksum_error" in r.text and bad not in r.text
    r = api.post("/v1/persons/search", headers=headers, json={"id_number": wanted, "name": "张伟"})
    assert r.status_code == 422 and wanted not in r.text and "张伟" not in r.text  # pydantic's input is not echoed


# ---------------------------------------------------------------------------------------------- batch check

def test_batch_check_matches_names_and_limits_the_batch(api, keys, warehouse):
    headers = _h(keys["civil_affairs"], "mz-canji-subsidy")  # releases name and id_number, not birth_date
    items = [{"id_number": PERSONS["M000000001"]["id_number"], "name": "張偉"},   # traditional: the same name
             {"id_number": PERSONS["M000000002"]["id_number"], "name": "王芬"},   # another name
             {"id_number": PERSONS["M000000005"]["id_number"]},                  # no name given
             {"id_number": UNKNOWN_ID, "name": "赵六"},
             {"id_number": "12345"}]
    before = _last_access_id(warehouse)
    r = api.post("/v1/persons/check", headers=headers, json={"items": items})
    assert r.status_code == 200
    body = r.json()
    assert [(x["index"], x["match"], x["master_id"]) for x in body["results"]] == [
        (0, "matched", "M000000001"), (1, "name_mismatch", "M000000002"), (2, "matched", "M000000005"),
        (3, "not_found", None), (4, "invalid_id_number", None)]
    assert body["results"][2]["person_status"] == "deceased" and body["results"][2]["name_checked"] is False
    assert body["counts"] == {"matched": 2, "name_mismatch": 1, "not_found": 1, "invalid_id_number": 1}
    assert not _full_ids_in(body) and "王芳" not in r.text
    [row] = _log(warehouse, since=before)
    assert (row["requested"], row["results"], row["status"], row["purpose"]) == (5, 3, 200, "mz-canji-subsidy")
    # without a purpose a 有条件 name is not compared
    bare = api.post("/v1/persons/check", headers=_h(keys["civil_affairs"]), json={"items": items[:2]}).json()
    assert bare["name_checked"] is False and [x["match"] for x in bare["results"]] == ["matched", "matched"]
    # one item too many
    r = api.post("/v1/persons/check", headers=headers, json={"items": items + items[:1]})
    assert r.status_code == 413 and f"at most {MAX_BATCH} items" in r.json()["detail"]
    # a body far beyond any allowed batch is refused before it is parsed
    r = api.post("/v1/persons/check", headers=headers, json={"items": [{"id_number": UNKNOWN_ID}] * 5000})
    assert r.status_code == 413
    assert [x["status"] for x in _log(warehouse, since=before)][-2:] == [413, 413]


# ---------------------------------------------------------------------------------------------- rate limits

def test_rate_limit_answers_429_with_retry_after(limited_api, keys, warehouse):
    headers = _h(keys["limited"])
    before = _last_access_id(warehouse)
    statuses = [limited_api.get("/v1/persons/M000000002", headers=headers).status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
    r = limited_api.get("/v1/persons/M000000002", headers=headers)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # another key has its own bucket; a large batch costs more than one token
    other = _h(keys["social_security"])
    check = {"items": [{"id_number": UNKNOWN_ID}] * 5}  # 3 tokens at 2 items a token
    assert limited_api.post("/v1/persons/check", headers=other, json=check).status_code == 200
    assert limited_api.post("/v1/persons/check", headers=other, json=check).status_code == 429
    assert [x["status"] for x in _log(warehouse, since=before)] == [200, 200, 200, 429, 429, 200, 429]


def test_token_bucket_refills():
    now = [0.0]
    buckets = TokenBuckets(RateLimit(per_second=2, burst=2), clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0
    now[0] = 0.5
    assert buckets.take("a") == 0


# ---------------------------------------------------------------------------------------------- review queue

def test_stewards_review_through_the_api(api, keys, warehouse):
    steward = _h(keys["steward"])
    queue = api.get("/v1/reviews", headers=steward)
    assert queue.status_code == 200
    [pair] = queue.json()["reviews"]
    assert (pair["master_l"], pair["master_r"]) == ("M000000001", "M000000002")
    shown = api.get(f"/v1/reviews/{pair['review_id']}", headers=steward)
    assert shown.status_code == 200
    assert shown.json()["left"]["name"] == "张*" and shown.json()["evidence"] == {"mw_name": -1.5}
    assert not _full_ids_in(shown.json()) and not any(n in shown.text for n in ALL_NAMES)
    assert api.post(f"/v1/reviews/{pair['review_id']}/decision", headers=_h(keys["civil_affairs"]),
                    json={"decision": "not_a_match", "reviewer": "x"}).status_code == 404
    r = api.post(f"/v1/reviews/{pair['review_id']}/decision", headers=steward,
                 json={"decision": "not_a_match", "reviewer": "刘科长", "comment": "不同出生日期"})
    assert r.status_code == 200 and r.json()["decision"] == "not_a_match"
    assert api.post("/v1/reviews/999/decision", headers=steward,
                    json={"decision": "match", "reviewer": "x"}).text == '{"detail":"not found"}'
    assert api.post(f"/v1/reviews/{pair['review_id']}/decision", headers=steward,
                    json={"decision": "maybe", "reviewer": "x"}).status_code == 422
    with warehouse.connect() as conn:
        row = conn.execute(sa.text("SELECT decision, reviewer FROM mpi.review_pair")).one()
    assert row.decision == "not_a_match" and row.reviewer == f"刘科长 (api key {key_id_of(keys['steward'])})"
    assert api.get("/v1/reviews", headers=steward).json()["reviews"] == []


# ---------------------------------------------------------------------------------------------- audit and leakage

def test_every_request_is_logged_without_personal_data(api, keys, warehouse):
    before = _last_access_id(warehouse)
    civil = keys["civil_affairs"]
    requests = [
        lambda: api.get("/v1/persons/M000000002", headers=_h(civil, "mz-dibao-review")),
        lambda: api.get("/v1/persons/" + PERSONS["M000000002"]["id_number"], headers=_h(civil)),  # misuse
        lambda: api.post("/v1/persons/search", headers=_h(civil), json={"id_number": ALL_IDS[1]}),
        lambda: api.post("/v1/persons/search", headers=_h(civil), json={"id_number": UNKNOWN_ID}),
        lambda: api.post("/v1/persons/check", headers=_h(civil), json={"items": [{"id_number": ALL_IDS[2]}]}),
        lambda: api.get("/v1/reviews", headers=_h(civil)),
        lambda: api.get("/v1/persons/M000000002"),
    ]
    statuses = [send().status_code for send in requests]
    rows = _log(warehouse, since=before)
    assert len(rows) == len(requests)
    assert [r["status"] for r in rows] == statuses == [200, 404, 200, 404, 200, 404, 401]
    assert [(r["requested"], r["results"]) for r in rows] == [(1, 1), (1, 0), (1, 1), (1, 0), (1, 1), (0, 0), (0, 0)]
    assert rows[0]["endpoint"] == "GET /v1/persons/M000000002" and rows[0]["purpose"] == "mz-dibao-review"
    assert rows[1]["endpoint"] == "GET /v1/persons/<masked>"
    assert {r["department"] for r in rows[:6]} == {"civil_affairs"} and rows[6]["department"] is None
    with warehouse.connect() as conn:
        everything = json.dumps([dict(r) for r in conn.execute(sa.text("SELECT * FROM audit.access_log")).mappings()],
                                default=str, ensure_ascii=False)
    assert not any(i in everything for i in ALL_IDS) and not any(n in everything for n in ALL_NAMES)


def test_a_hyphenated_id_number_or_a_name_in_a_url_is_masked_in_the_log(api, keys, warehouse):
    before = _last_access_id(warehouse)
    number = PERSONS["M000000002"]["id_number"]
    hyphenated = f"{number[:6]}-{number[6:14]}-{number[14:]}"
    for segment in (hyphenated, "zhangsan", urllib.parse.quote("张三")):
        assert api.get("/v1/persons/" + segment, headers=_h(keys["civil_affairs"])).status_code == 404
    rows = _log(warehouse, since=before)
    assert [r["endpoint"] for r in rows] == ["GET /v1/persons/<masked>"] * 3


def test_no_full_id_number_where_the_department_may_not_have_one(api, keys):
    """Scan every answer: a full ID number only where id_number is released (shared, and a purpose given)."""
    sharing = _sharing()
    for department in ("civil_affairs", "social_security", "statistics"):
        for purpose in (None, "核查", "mz-dibao-review", "rs-pension-qualification"):
            headers = _h(keys[department], purpose)
            answers = [api.get(f"/v1/persons/{m}", headers=headers) for m in (*PERSONS, "M000000004")]
            answers.append(api.post("/v1/persons/search", headers=headers, json={"id_number": ALL_IDS[0]}))
            answers.append(api.post("/v1/persons/check", headers=headers,
                                    json={"items": [{"id_number": i, "name": "张伟"} for i in ALL_IDS]}))
            released = "id_number" in sharing[department].unlocked(purpose)
            for r in answers:
                assert r.status_code in (200, 404)
                leaked = _full_ids_in(r.json())
                if not released:
                    assert not leaked, (department, purpose, r.request.url)
                # a full ID number only ever sits in an id_number field
                assert not re.search(r"\d{17}[\dX]", json.dumps(
                    {k: v for k, v in _flatten(r.json()) if k != "id_number"}, ensure_ascii=False))
            fields_seen = {k for r in answers if r.status_code == 200 for k, _ in _flatten(r.json())}
            hidden = {f for f in PUBLISHED_FIELDS if sharing[department].classes[f] == NOT_SHARED}
            assert not (hidden & fields_seen), (department, hidden & fields_seen)


def _flatten(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _flatten(v, key)
    else:
        yield key, value


def test_nothing_is_served_that_cannot_be_logged(api, keys, warehouse):
    with warehouse.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit.access_log RENAME TO access_log_away"))
    try:
        r = api.get("/v1/persons/M000000001", headers=_h(keys["civil_affairs"], "mz-dibao-review"))
    finally:
        with warehouse.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit.access_log_away RENAME TO access_log"))
    assert r.status_code == 503 and "could not be logged" in r.json()["detail"] and "张伟" not in r.text
