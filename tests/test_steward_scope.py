"""Stewards through the read API see only their own department's review records, with the fields their
department may see; the hub's own user (``hub review``) sees every pair, masked; a decision whose
access-log row cannot be written is not recorded. Real HTTP on loopback, a real warehouse."""

from __future__ import annotations

import json
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa

from connectors.registry import source_departments
from hub.api import create_app
from hub.api_keys import create_key
from schemas.id_number import check_character
from tests.helpers import empty_warehouse
from tests.test_api import _serve
from warehouse.sharing import NOT_SHARED, load_sharing

# synthetic residents: invented names, valid-format fake numbers (region 341522, the county of the demo)
RECORDS = {
    # key: (name, birth date, sex, sequence, village, house number, phone, master)
    "mz_dibao/D1": ("赵建国", "19620314", 1, "013", "幸福村", "12号", "13900001111", "M000000001"),
    "rs_yanglao/Y1": ("赵建国", "19620314", 1, "031", "幸福村", "12号", "13900001111", "M000000002"),
    "mz_canji/C1": ("钱秀英", "19750822", 2, "024", "和平村", "5号", "13700002222", "M000000003"),
    "wj_chusheng/B1": ("钱秀英", "19750822", 2, "042", "和平村", "7号", "13700002222", "M000000004"),
    "rs_yiliao/Y2": ("孙立", "19881130", 1, "057", "新华村", "3号", "13600003333", "M000000005"),
    "rs_yanglao/Y3": ("孙立", "19881130", 1, "075", "新华村", "3号", "13600003333", "M000000005"),
    "wj_yuling/W1": ("李梅", "19930105", 2, "068", "东风村", "21号", "13500004444", "M000000006"),
    "wj_liudong/W2": ("李梅", "19930105", 2, "086", "东风村", "21号", "13500004444", "M000000007"),
    # two civil-affairs records under the social-security master M000000005
    "mz_canji/C2": ("周红", "19700101", 2, "082", "新华村", "9号", "13600005555", "M000000005"),
    "mz_dibao/D2": ("周红", "19700101", 2, "028", "新华村", "9号", "13600005555", "M000000005"),
}
#: review pair id → its two records: civil affairs + social security, civil affairs + health,
#: social security only, health only
PAIRS = {1: ("mz_dibao/D1", "rs_yanglao/Y1"), 2: ("mz_canji/C1", "wj_chusheng/B1"),
         3: ("rs_yiliao/Y2", "rs_yanglao/Y3"), 4: ("wj_yuling/W1", "wj_liudong/W2")}


def id_number_of(key: str) -> str:
    _, birth, _, seq, *_ = RECORDS[key]
    body = "341522" + birth + seq
    return body + check_character(body)


def seed_reviews(engine: sa.Engine) -> None:
    """Eight standardized records of four departments' sources under seven masters, and four review pairs."""
    empty_warehouse(engine)
    with engine.begin() as conn:
        masters = sorted({r[-1] for r in RECORDS.values()})
        for m in masters:
            conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) VALUES (:m, :a)"), {"m": m, "a": f"rec:{m}"})
        for key, (name, birth, sex, _, village, house, phone, master) in RECORDS.items():
            source, rid = key.split("/")
            batch = conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES (:s) RETURNING batch_id"),
                                 {"s": source}).scalar_one()
            raw_id = conn.execute(sa.text(
                "INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)"
                " VALUES (:s, :r, 'h', '{}', :b, now()) RETURNING record_id"), {"s": source, "r": rid, "b": batch}
            ).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO std.resident (source, source_record_id, raw_record_id, batch_id, name, name_status,"
                " id_number, id_number_status, sex, birth_date, phone, address_village, address_house_no, status_raw)"
                " VALUES (:s, :r, :raw, :b, :n, 'valid', :i, 'valid', :sex, CAST(:bd AS date), :ph, :v, :h, '正常')"),
                {"s": source, "r": rid, "raw": raw_id, "b": batch, "n": name, "i": id_number_of(key), "sex": sex,
                 "bd": f"{birth[:4]}-{birth[4:6]}-{birth[6:]}", "ph": "+86" + phone, "v": village, "h": house})
            conn.execute(sa.text("INSERT INTO mpi.crosswalk (source, source_record_id, master_id, match_rule)"
                                 " VALUES (:s, :r, :m, 'test')"), {"s": source, "r": rid, "m": master})
        for review_id, (left, right) in PAIRS.items():
            conn.execute(sa.text(
                "INSERT INTO mpi.review_pair (review_id, record_key_l, record_key_r, match_probability, match_weight,"
                " review_reason, evidence) VALUES (:i, :l, :r, :p, 0.5, 'grey_zone', '{\"mw_name\": 2.5}')"),
                {"i": review_id, "l": left, "r": right, "p": 0.9 - review_id / 10})


@pytest.fixture(scope="module")
def warehouse(engine):
    seed_reviews(engine)
    return engine


@pytest.fixture(scope="module")
def stewards(warehouse):
    with warehouse.begin() as conn:
        return {d: {"X-API-Key": create_key(conn, d, f"{d} data office", scopes=["steward"])}
                for d in ("civil_affairs", "health", "social_security")}


@pytest.fixture(scope="module")
def api(warehouse, stewards):
    server, thread, url = _serve(create_app(warehouse, rate_limit=None, quotas=None))
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client
    server.should_exit = True
    thread.join(5)


def _mine(department: str) -> set[str]:
    return {s for s, d in source_departments().items() if d == department}


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_a_social_security_steward_sees_only_its_records_and_fields(api, stewards):
    ss, mine = stewards["social_security"], _mine("social_security")
    listed = api.get("/v1/reviews", headers=ss, params={"status": "all"})
    assert listed.status_code == 200
    assert [r["review_id"] for r in listed.json()["reviews"]] == [1, 3]
    for r in listed.json()["reviews"]:
        assert {(r[side] or "").split("/")[0] for side in ("record_key_l", "record_key_r")} & mine
    for review_id in (2, 4):  # no social-security record: as if the pair did not exist
        assert api.get(f"/v1/reviews/{review_id}", headers=ss).status_code == 404

    shown = api.get("/v1/reviews/1", headers=ss)
    assert shown.status_code == 200, shown.text
    doc = shown.json()
    civil, own = doc["left"], doc["right"]
    # the civil-affairs record: neither its source nor its record id, its fields withheld
    assert civil["record_key"] is None and civil["master_id"] == "M000000001"
    assert civil["department"] == "another department"
    assert doc["record_key_l"] is None and doc["record_key_r"] == "rs_yanglao/Y1" and doc["other_records"] == 1
    assert [(r["record_key_l"], r["record_key_r"], r["other_records"]) for r in listed.json()["reviews"]] == [
        (None, "rs_yanglao/Y1", 1), ("rs_yiliao/Y2", "rs_yanglao/Y3", 0)]
    assert not {"name", "id_number", "birth_date", "sex", "phone", "address_village", "status_raw"} & set(civil)
    assert "address_village" in civil["withheld"]
    # its own record: what social security may see (address is 不予共享 for it), masked
    sharing = load_sharing()["social_security"]
    assert sharing.classes["address"] == NOT_SHARED
    assert own["record_key"] == "rs_yanglao/Y1" and own["name"] == "赵**" and own["birth_date"] == "1962-03-14"
    assert own["id_number"] == "341522************" and own["sex"] == 1
    assert {"address_village", "address_house_no", "phone"} <= set(own["withheld"])
    # no field social security may not see, anywhere in any answer, nor a village's name
    texts = [listed.text, shown.text, api.get("/v1/reviews/3", headers=ss).text]
    for text in texts:
        assert "mz_" not in text
        assert not {"address_village", "address_house_no", "phone", "address"} & _keys(json.loads(text))
        assert not any(v in text for v in ("幸福村", "新华村", "12号", "3号", "13900001111", "13600003333"))
        assert not any(id_number_of(k) in text for k in RECORDS)


def test_a_civil_affairs_steward_sees_its_pairs_with_its_fields_masked(api, stewards):
    civil = stewards["civil_affairs"]
    assert [r["review_id"] for r in api.get("/v1/reviews", headers=civil).json()["reviews"]] == [1, 2]
    assert api.get("/v1/reviews/3", headers=civil).status_code == 404
    doc = api.get("/v1/reviews/2", headers=civil).json()
    own, health = doc["left"], doc["right"]
    assert own["address_village"] == "和平村" and own["address_house_no"] == "**"
    assert own["phone"] == "137****2222" and own["withheld"] == []
    assert health["department"] == "another department" and health["record_key"] is None
    assert "birth_date" not in health and "name" not in health and "wj_" not in json.dumps(doc)
    assert "7号" not in json.dumps(doc, ensure_ascii=False)


def test_the_hub_own_user_sees_every_pair_masked(warehouse):
    from hub.stewardship import list_reviews, show_review

    with warehouse.connect() as conn:
        assert [r["review_id"] for r in list_reviews(conn, status="all")] == [1, 2, 3, 4]
        shown = show_review(conn, 2)
    assert shown["right"]["name"] == "钱**" and shown["right"]["address_house_no"] == "**"
    assert shown["right"]["id_number"] == "341522************" and shown["right"]["address_village"] == "和平村"


def test_a_steward_cannot_decide_outside_its_department(api, stewards, warehouse):
    ss = stewards["social_security"]
    refused = [
        api.post("/v1/reviews/4/decision", headers=ss, json={"decision": "not_a_match", "reviewer": "王科员"}),
        api.get("/v1/masters/M000000006/decisions", headers=ss),
        api.post("/v1/masters/M000000006/detach-id", headers=ss,
                 json={"record": "wj_yuling/W1", "reviewer": "王科员", "reason": "another person's number"}),
    ]
    assert [r.status_code for r in refused] == [404, 404, 404]
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM mpi.decision")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT decision FROM mpi.review_pair WHERE review_id = 4")).scalar_one() is None


@contextmanager
def _access_log_refuses(engine: sa.Engine, endpoint_like: str):
    """While inside: the access log refuses rows whose endpoint is like ``endpoint_like`` (a trigger in a
    schema of the test's own, dropped afterwards)."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA steward_scope_test"))
        conn.execute(sa.text(
            "CREATE FUNCTION steward_scope_test.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.endpoint LIKE '{endpoint_like}' THEN RAISE EXCEPTION 'access log unavailable (test)'; END IF;"
            " RETURN NEW; END $$"))
        conn.execute(sa.text("CREATE TRIGGER steward_scope_test_refuse BEFORE INSERT ON audit.access_log"
                             " FOR EACH ROW EXECUTE FUNCTION steward_scope_test.refuse()"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER steward_scope_test_refuse ON audit.access_log"))
            conn.execute(sa.text("DROP SCHEMA steward_scope_test CASCADE"))


def _decisions(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT kind, record_keys FROM mpi.decision ORDER BY decision_id")).all()


def test_a_decision_whose_access_log_row_cannot_be_written_is_not_recorded(api, stewards, warehouse):
    ss = stewards["social_security"]
    move = {"record": "rs_yiliao/Y2", "reviewer": "王科员", "reason": "another person"}
    before = _decisions(warehouse)
    with _access_log_refuses(warehouse, "POST /v1/%"):
        decided = api.post("/v1/reviews/3/decision", headers=ss, json={"decision": "match", "reviewer": "王科员"})
        moved = api.post("/v1/masters/M000000005/move-out", headers=ss, json=move)
        assert (decided.status_code, moved.status_code) == (503, 503), (decided.text, moved.text)
        assert _decisions(warehouse) == before
        with warehouse.connect() as conn:
            assert conn.execute(sa.text("SELECT decision FROM mpi.review_pair WHERE review_id = 3")).scalar_one() is None
            assert conn.execute(sa.text(
                "SELECT count(*) FROM audit.access_log WHERE endpoint IN ('POST /v1/reviews/3/decision',"
                " 'POST /v1/masters/M000000005/move-out')")).scalar_one() == 0
    # with the log back, the same decision is recorded, with exactly one access-log row
    decided = api.post("/v1/reviews/3/decision", headers=ss, json={"decision": "match", "reviewer": "王科员"})
    assert decided.status_code == 200, decided.text
    assert _decisions(warehouse) == [*before, ("match", ["rs_yanglao/Y3", "rs_yiliao/Y2"])] or \
        _decisions(warehouse) == [*before, ("match", ["rs_yiliao/Y2", "rs_yanglao/Y3"])]
    with warehouse.connect() as conn:
        rows = conn.execute(sa.text("SELECT status FROM audit.access_log WHERE endpoint = 'POST /v1/reviews/3/decision'")
                            ).scalars().all()
    assert rows == [200]


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM mpi.decision")).scalar_one()


def test_another_departments_record_answers_like_a_record_that_does_not_exist(api, stewards, warehouse):
    ss, before = stewards["social_security"], _count(warehouse)
    why = {"reviewer": "王科员", "reason": "another person"}

    def post(action: str, **body):
        return api.post(f"/v1/masters/M000000005/{action}", headers=ss, json={**body, **why})

    # a civil-affairs record of the master, a record that does not exist, its own record of another master
    for action in ("move-out", "detach-id"):
        foreign, missing, elsewhere = (post(action, record=r) for r in ("mz_canji/C2", "mz_canji/C9", "rs_yanglao/Y1"))
        assert [foreign.status_code, missing.status_code, elsewhere.status_code] == [404, 404, 404], foreign.text
        assert foreign.text == missing.text == elsewhere.text
    foreign, missing = post("split", records=["mz_canji/C2"]), post("split", records=["rs_yiliao/Y9"])
    mixed = post("split", records=["rs_yiliao/Y2", "mz_dibao/D2"])
    assert [foreign.status_code, missing.status_code, mixed.status_code] == [404, 404, 404]
    assert foreign.text == missing.text == mixed.text
    assert _count(warehouse) == before


def test_decisions_name_only_the_stewards_own_records(api, stewards, warehouse):
    ss, civil = stewards["social_security"], stewards["civil_affairs"]
    moved = api.post("/v1/masters/M000000005/move-out", headers=ss,
                     json={"record": "rs_yiliao/Y2", "reviewer": "王科员", "reason": "a namesake in another village"})
    assert moved.status_code == 200, moved.text
    out = moved.json()
    assert (out["record_keys"], out["other_keys"], out["other_records"]) == (["rs_yiliao/Y2"], ["rs_yanglao/Y3"], 2)
    assert "mz_" not in moved.text and out["reviewer"].startswith("王科员")

    listed = api.get("/v1/masters/M000000005/decisions", headers=ss)
    assert listed.status_code == 200 and "mz_" not in listed.text
    mine = {d["kind"]: d for d in listed.json()["decisions"]}
    assert set(mine) == {"match", "move_out"}  # the pair 3 match of the access-log test, and this move-out
    assert mine["move_out"]["other_records"] == 2 and mine["move_out"]["subject"] is None

    # the civil-affairs steward: the move-out names its two records, not the social-security ones, nor who
    seen = api.get("/v1/masters/M000000005/decisions", headers=civil)
    assert seen.status_code == 200
    assert "rs_" not in seen.text and "王科员" not in seen.text and "namesake" not in seen.text
    (theirs,) = seen.json()["decisions"]  # the match of two social-security records is not listed
    assert theirs["kind"] == "move_out" and theirs["record_keys"] == [] and theirs["other_records"] == 2
    assert theirs["other_keys"] == ["mz_canji/C2", "mz_dibao/D2"]
    assert theirs["reviewer"] == "another department's steward" and theirs["comment"] is None

    # the hub's own user sees every record and the reviewer
    from hub.stewardship import master_decisions

    with warehouse.connect() as conn:
        full = master_decisions(conn, "M000000005")["decisions"]
    moved_out = next(d for d in full if d["kind"] == "move_out")
    assert moved_out["other_keys"] == ["mz_canji/C2", "mz_dibao/D2", "rs_yanglao/Y3"]
    assert moved_out["comment"] == "a namesake in another village" and moved_out["reviewer"].startswith("王科员")


def test_a_refused_match_names_only_the_stewards_records_and_no_cli(api, stewards, warehouse):
    from hub.stewardship import DecisionRefused, decide

    ss, before = stewards["social_security"], _count(warehouse)
    # pair 1: two different valid ID numbers, a civil-affairs and a social-security record
    refused = api.post("/v1/reviews/1/decision", headers=ss, json={"decision": "match", "reviewer": "王科员"})
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "mz_" not in detail and "hub history" not in detail and "hub review" not in detail
    assert "rs_yanglao/Y1" in detail and "a record of another department" in detail
    assert "/v1/masters/M000000002/detach-id" in detail
    # the hub's own user is told every record and the command
    with warehouse.connect() as conn, pytest.raises(DecisionRefused) as cli:
        decide(conn, 1, "match", reviewer="数据工程师")
    assert "mz_dibao/D1" in str(cli.value) and "hub review detach-id" in str(cli.value)
    assert _count(warehouse) == before


def test_another_departments_pair_decision_hides_the_reviewer(api, stewards, warehouse):
    ss, civil = stewards["social_security"], stewards["civil_affairs"]
    decided = api.post("/v1/reviews/1/decision", headers=civil,
                       json={"decision": "not_a_match", "reviewer": "李干事", "comment": "低保户本人"})
    assert decided.status_code == 200, decided.text
    assert (decided.json()["record_key_l"], decided.json()["record_key_r"]) == ("mz_dibao/D1", None)
    assert decided.json()["other_records"] == 1 and "rs_" not in decided.text

    texts = [api.get("/v1/reviews", headers=ss, params={"status": "decided"}),
             api.get("/v1/reviews/1", headers=ss), api.get("/v1/masters/M000000002/decisions", headers=ss)]
    assert [t.status_code for t in texts] == [200, 200, 200]
    for t in texts:
        assert "李干事" not in t.text and "低保户" not in t.text and "mz_" not in t.text
    pair = next(r for r in texts[0].json()["reviews"] if r["review_id"] == 1)
    assert pair["reviewer"] == "another department's steward" and pair["comment"] is None
    assert texts[1].json()["reviewer"] == "another department's steward"
    (decision,) = texts[2].json()["decisions"]
    assert decision["record_keys"] == ["rs_yanglao/Y1"] and decision["other_records"] == 1
    assert decision["reviewer"] == "another department's steward"
    # its own department still reads its reviewer; the hub's own user reads everything
    own = api.get("/v1/reviews/1", headers=civil).json()
    assert own["reviewer"].startswith("李干事") and own["comment"] == "低保户本人"
    from hub.stewardship import list_reviews

    with warehouse.connect() as conn:
        pair = next(r for r in list_reviews(conn, status="decided") if r["review_id"] == 1)
    assert pair["record_key_r"] == "rs_yanglao/Y1" and pair["reviewer"].startswith("李干事")
