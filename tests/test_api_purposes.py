"""Purposes as a catalogue, over real HTTP and a real warehouse: what a purpose releases, what the access
log keeps of it, the master ids it names, and derived fields that must not reveal other departments'
programmes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.parse

import httpx
import pytest
import sqlalchemy as sa

from hub.api import RateLimit, create_app
from hub.api_keys import create_key
from tests.test_api import ALL_IDS, ALL_NAMES, PERSONS, UNKNOWN_ID, _last_access_id, _log, _serve
from tests.test_api import warehouse as warehouse  # noqa: PLC0414 — the same small published release
from warehouse.access_log import verify_chain
from warehouse.purposes import NOT_A_PURPOSE_CODE, Purpose
from warehouse.sharing import load_sharing

CIVIL_CONDITIONAL = {"name", "id_number", "birth_date", "phone", "address"}
EXPIRED = Purpose("mz-old-census", "civil_affairs", "旧普查 an old census", "已废止的通知",
                  ("name", "address"), dt.date(2024, 12, 31))


def _sharing():
    """The shipped configuration and catalogue, plus one expired civil-affairs purpose."""
    sharing = load_sharing()
    civil = sharing["civil_affairs"]
    sharing["civil_affairs"] = dataclasses.replace(civil, purposes={**civil.purposes, EXPIRED.code: EXPIRED})
    return sharing


@pytest.fixture(scope="module")
def keys(warehouse):
    departments = list(_sharing())
    with warehouse.begin() as conn:
        # M000000001 is in a programme of each department (and its sources disagree on two fields)
        conn.execute(sa.text("UPDATE publish.master_person SET sources = ARRAY['mz_dibao', 'rs_yanglao', 'wj_chusheng'],"
                             " record_count = 3, conflicts = 2 WHERE master_id = 'M000000001'"))
        conn.execute(sa.text("INSERT INTO publish.enrolment (release_no, master_id, source, source_record_id, department,"
                             " program, status_raw) VALUES (1, 'M000000001', 'wj_chusheng', 'C-9', 'health', 'birth', '登记')"))
        return {d: create_key(conn, d, f"{d} purposes client", departments=departments)
                for d in ("civil_affairs", "social_security", "health")}


@pytest.fixture(scope="module")
def api(warehouse, keys):
    server, thread, url = _serve(create_app(warehouse, sharing=_sharing(), max_batch=5,
                                            rate_limit=RateLimit(per_second=100, burst=500)))
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client
    server.should_exit = True
    thread.join(5)


def _h(key: str, purpose: str | None = None) -> dict[str, str]:
    headers = {"X-API-Key": key}
    if purpose is not None:
        headers["X-Purpose"] = urllib.parse.quote(purpose)
    return headers


SENT_TEXT = f"核查{ALL_NAMES[0]}身份证{ALL_IDS[0]}"  # what a department once typed as its purpose
JUNK = ["-", ".", "\u200b", "低保年审入户核查", "mz-no-such-purpose", "rs-pension-qualification",
        "MZ-DIBAO-REVIEW", " mz-dibao-review x", EXPIRED.code, SENT_TEXT]


@pytest.mark.parametrize("purpose", JUNK, ids=range(len(JUNK)))
def test_anything_but_an_approved_code_in_force_releases_no_conditional_field(api, keys, warehouse, purpose):
    before = _last_access_id(warehouse)
    r = api.get("/v1/persons/M000000001", headers=_h(keys["civil_affairs"], purpose))
    assert r.status_code == 200
    body = r.json()
    assert set(body["withheld"]) == CIVIL_CONDITIONAL and not CIVIL_CONDITIONAL & set(body["person"])
    found = api.post("/v1/persons/search", headers=_h(keys["civil_affairs"]),
                     json={"id_number": ALL_IDS[0], "purpose": purpose}).json()
    assert set(found["withheld"]) == CIVIL_CONDITIONAL and not CIVIL_CONDITIONAL & set(found["results"][0])
    checked = api.post("/v1/persons/check", headers=_h(keys["civil_affairs"]),
                       json={"items": [{"id_number": ALL_IDS[0], "name": "李四"}], "purpose": purpose}).json()
    assert checked["name_checked"] is False and checked["results"][0]["match"] == "matched"
    for text in (r.text, json.dumps(found, ensure_ascii=False), json.dumps(checked, ensure_ascii=False)):
        assert ALL_IDS[0] not in text and ALL_NAMES[0] not in text  # never echoed
    logged = [row["purpose"] for row in _log(warehouse, keys["civil_affairs"], since=before)]
    expected = f"(expired) {EXPIRED.code}" if purpose == EXPIRED.code else NOT_A_PURPOSE_CODE
    assert logged == [expected] * 3


def test_an_approved_code_releases_exactly_its_fields(api, keys, warehouse):
    civil = keys["civil_affairs"]
    before = _last_access_id(warehouse)
    canji = api.get("/v1/persons/M000000001", headers=_h(civil, "mz-canji-subsidy")).json()
    assert {"name", "id_number", "phone"} <= set(canji["person"]) and set(canji["withheld"]) == {"birth_date", "address"}
    assert canji["person"]["phone"] == PERSONS["M000000001"]["phone"]
    dibao = api.post("/v1/persons/search", headers=_h(civil),
                     json={"id_number": ALL_IDS[0], "purpose": "  mz-dibao-review "}).json()
    assert dibao["withheld"] == [] and dibao["results"][0]["birth_date"] == "1980-01-01"
    # social security's own purpose: name, ID number and birth date; its address and phone stay 不予共享
    social = api.get("/v1/persons/M000000001", headers=_h(keys["social_security"], "rs-death-stop-payment")).json()
    assert {"name", "id_number"} <= set(social["person"]) and social["withheld"] == ["birth_date"]
    assert "address" not in social["person"] and "phone" not in social["person"]
    rows = _log(warehouse, since=before)
    assert [r["purpose"] for r in rows] == ["mz-canji-subsidy", "mz-dibao-review", "rs-death-stop-payment"]


def test_the_log_never_holds_the_text_sent_as_a_purpose(api, keys, warehouse):
    for purpose in (SENT_TEXT, "\x00", "\u200b" + ALL_IDS[1]):
        api.get("/v1/persons/M000000002", headers=_h(keys["health"], purpose))
        api.get("/v1/persons/M000000002", headers={"X-API-Key": keys["health"], "X-Purpose": "%00" + ALL_IDS[1]})
        api.post("/v1/persons/search", headers=_h(keys["health"]), json={"id_number": ALL_IDS[1], "purpose": purpose})
    with warehouse.connect() as conn:
        everything = json.dumps([dict(r) for r in conn.execute(sa.text("SELECT * FROM audit.access_log")).mappings()],
                                default=str, ensure_ascii=False)
        purposes = set(conn.execute(sa.text("SELECT DISTINCT purpose FROM audit.access_log"
                                            " WHERE purpose IS NOT NULL")).scalars())
    assert not any(i in everything for i in ALL_IDS) and not any(n in everything for n in ALL_NAMES)
    codes = {c for d in _sharing().values() for c in d.purposes}
    assert purposes <= codes | {NOT_A_PURPOSE_CODE, f"(expired) {EXPIRED.code}"}


def test_purposes_lists_the_departments_catalogue(api, keys):
    r = api.get("/v1/purposes", headers=_h(keys["social_security"]))
    assert r.status_code == 200
    body = r.json()
    assert body["department"] == "social_security" and body["conditional_fields"] == ["name", "id_number", "birth_date"]
    pension = {p["code"]: p for p in body["purposes"]}["rs-pension-qualification"]
    assert "社会保险法" in pension["legal_basis"] and pension["fields"] == ["name", "id_number", "birth_date"]
    assert pension["in_force"] is True and pension["expires"] >= dt.date.today().isoformat()
    assert all(p["code"].startswith("rs-") for p in body["purposes"])
    civil = {p["code"]: p for p in api.get("/v1/purposes", headers=_h(keys["civil_affairs"])).json()["purposes"]}
    assert civil[EXPIRED.code]["in_force"] is False and "mz-dibao-review" in civil
    assert api.get("/v1/purposes").status_code == 401


def test_log_rows_name_the_master_ids_returned_and_the_chain_holds(api, keys, warehouse):
    civil = _h(keys["civil_affairs"], "mz-dibao-review")
    before = _last_access_id(warehouse)
    api.get("/v1/persons/M000000004", headers=civil)  # retired twice: answers with M000000001
    api.post("/v1/persons/search", headers=civil, json={"id_number": ALL_IDS[1]})
    api.post("/v1/persons/check", headers=civil, json={"items": [{"id_number": i} for i in (*ALL_IDS, UNKNOWN_ID)]})
    api.get("/v1/persons/M000000099", headers=civil)
    rows = _log(warehouse, keys["civil_affairs"], since=before)
    assert [(r["status"], r["master_ids"]) for r in rows] == [
        (200, ["M000000001"]), (200, ["M000000002"]), (200, ["M000000001", "M000000002", "M000000005"]), (404, [])]
    assert all(r["row_hash"] and r["prev_hash"] for r in rows)
    with warehouse.connect() as conn:
        ok, first_bad, checked = verify_chain(conn)
    assert (ok, first_bad) == (True, None) and checked >= len(rows)


def test_a_department_sees_only_its_own_sources(api, keys):
    """M000000001 is in civil affairs', social security's and health's programmes (sources) and has
    conflicts: social security sees only its own source and record, and no conflict count."""
    social = api.get("/v1/persons/M000000001", headers=_h(keys["social_security"])).json()["person"]
    assert social["sources"] == ["rs_yanglao"] and social["record_count"] == 1 and "conflicts" not in social
    assert [e["department"] for e in social["enrolments"]] == ["social_security"]
    civil = api.post("/v1/persons/search", headers=_h(keys["civil_affairs"]),
                     json={"id_number": ALL_IDS[0]}).json()["results"][0]
    assert civil["sources"] == ["mz_dibao"] and civil["record_count"] == 1 and "conflicts" not in civil
    health = api.get("/v1/persons/M000000001", headers=_h(keys["health"])).json()["person"]
    assert health["sources"] == ["wj_chusheng"] and health["record_count"] == 1 and "conflicts" not in health
