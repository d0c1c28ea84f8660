"""Who gets the stewards' pages of the workbench, over real HTTP as the API's own database role, on the small
seeded warehouse of the steward-scope tests: a key without the steward scope gets neither the review pages nor
the master view (403), an auditor cannot decide a pair (403, nothing recorded), a steward of another department
gets 404 for what is outside its scope, and every page view is in the access log with the purpose code given —
the purpose showing the 有条件 fields it releases in full."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa

from hub.api_keys import create_key
from tests.helpers import empty_warehouse
from tests.test_steward_scope import id_number_of, seed_reviews
from tests.workbench.browser import served_as_api_role

PREFIX = f"hub_r{secrets.token_hex(4)}_"


@pytest.fixture(scope="module")
def hub(engine, database_url):
    seed_reviews(engine)
    with engine.begin() as conn:
        keys = {"plain": create_key(conn, "civil_affairs", "civil affairs office"),
                "auditor": create_key(conn, "civil_affairs", "audit team", scopes=["auditor"]),
                "civil": create_key(conn, "civil_affairs", "civil affairs data office", scopes=["steward"]),
                "health": create_key(conn, "health", "health data office", scopes=["steward"]),
                "social": create_key(conn, "social_security", "pension office", scopes=["steward"])}
    try:
        with served_as_api_role(engine, database_url, PREFIX) as base:
            yield {"base": base, "keys": keys, "engine": engine}
    finally:
        empty_warehouse(engine)


@contextmanager
def _signed_in(hub, which: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub["base"], timeout=30, follow_redirects=False) as client:
        assert client.post("/workbench/login", data={"key": hub["keys"][which]}).status_code == 303
        yield client


def _csrf(client: httpx.Client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/workbench/").text).group(1)


def _log_since(engine, since: int) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT endpoint, key_id, purpose, status, results, master_ids FROM audit.access_log WHERE access_id > :a"
            " ORDER BY access_id"), {"a": since})]


def _last(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT coalesce(max(access_id), 0) FROM audit.access_log")).scalar_one()


def _decisions(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM mpi.decision")).scalar_one()


def test_without_the_steward_scope_no_review_page_and_no_master_page(hub):
    for which in ("plain", "auditor"):
        with _signed_in(hub, which) as client:
            for path in ("/workbench/reviews", "/workbench/reviews/1", "/workbench/masters/M000000001"):
                answer = client.get(path)
                assert answer.status_code == 403, (which, path)
                assert "数据管理员" in answer.text and "赵" not in answer.text


def test_an_auditor_cannot_decide_pairs_or_split_masters(hub):
    before = _decisions(hub["engine"])
    with _signed_in(hub, "auditor") as client:
        token = _csrf(client)
        answer = client.post("/workbench/reviews/1/decision", data={"csrf": token, "decision": "not_a_match"})
        assert answer.status_code == 403 and "steward" in answer.text
        answer = client.post("/workbench/masters/M000000001/split",
                             data={"csrf": token, "records": "mz_dibao/D1", "reason": "test"})
        assert answer.status_code == 403
    assert _decisions(hub["engine"]) == before
    with hub["engine"].connect() as conn:
        assert conn.execute(sa.text("SELECT decided_at FROM mpi.review_pair WHERE review_id = 1")).scalar() is None


def test_a_steward_of_another_department_gets_404_outside_its_scope(hub):
    with _signed_in(hub, "health") as client:
        # pair 1 (civil affairs + social security) and 3 (social security only) are not health's
        for path in ("/workbench/reviews/1", "/workbench/reviews/3", "/workbench/masters/M000000001",
                     "/workbench/masters/M000000002", "/workbench/masters/M999999999"):
            assert client.get(path).status_code == 404, path
        answer = client.post("/workbench/reviews/3/decision", data={"csrf": _csrf(client), "decision": "match"})
        assert answer.status_code == 404
        # its own: pair 2 (civil affairs + health) with the civil-affairs record shown by its master only
        page = client.get("/workbench/reviews/2")
        assert page.status_code == 200
        assert "wj_chusheng/B1" in page.text and "mz_canji/C1" not in page.text and "M000000003" in page.text
        queue = client.get("/workbench/reviews").text
        assert 'data-review="2"' in queue and 'data-review="4"' in queue
        assert 'data-review="1"' not in queue and 'data-review="3"' not in queue
    assert _decisions(hub["engine"]) == 0


def test_every_page_view_is_logged_with_the_purpose_which_shows_its_fields_in_full(hub):
    key_id = hub["keys"]["civil"].split(".")[0]
    since = _last(hub["engine"])
    full_id = id_number_of("mz_dibao/D1")
    with _signed_in(hub, "civil") as client:
        masked = client.get("/workbench/reviews/1")
        assert masked.status_code == 200
        assert "赵建国" not in masked.text and full_id not in masked.text and "赵**" in masked.text
        assert "1962-**-**" in masked.text and "1962-03-14" not in masked.text
        shown = client.get("/workbench/reviews/1", params={"purpose": "mz-dibao-review"})
        assert shown.status_code == 200 and "赵建国" in shown.text and full_id in shown.text
        assert "1962-03-14" in shown.text and "13900001111" in shown.text
        # the other department's record of the pair stays withheld whatever the purpose
        assert "rs_yanglao/Y1" not in shown.text and id_number_of("rs_yanglao/Y1") not in shown.text
        # a purpose of another department releases nothing, and is logged as a marker, not as sent
        other = client.get("/workbench/reviews/1", params={"purpose": "wj-birth-followup"})
        assert "赵建国" not in other.text and "不是本部门有效的用途" in other.text
        master = client.get("/workbench/masters/M000000001", params={"purpose": "mz-tekun-support"})
        assert master.status_code == 200 and "赵建国" in master.text
        assert client.get("/workbench/reviews", params={"reason": "grey"}).status_code == 200
    rows = _log_since(hub["engine"], since)
    assert [r[:4] for r in rows] == [
        ("POST /workbench/login", key_id, None, 303),
        ("GET /workbench/reviews/1", key_id, None, 200),
        ("GET /workbench/reviews/1", key_id, "mz-dibao-review", 200),
        ("GET /workbench/reviews/1", key_id, rows[3][2], 200),
        ("GET /workbench/masters/M000000001", key_id, "mz-tekun-support", 200),
        ("GET /workbench/reviews", key_id, None, 200)]
    assert rows[3][2] not in (None, "wj-birth-followup")
    assert rows[2][4] >= 1 and set(rows[2][5]) == {"M000000001", "M000000002"}
    assert rows[4][5] == ["M000000001"]
    # the queue logs what it listed: civil affairs' pairs 1 and 2
    assert rows[5][4] == 2 and set(rows[5][5]) == {"M000000001", "M000000002", "M000000003", "M000000004"}


def test_the_queue_filters_by_the_records_department_reason_band_and_age(hub):
    def listed(client, **params) -> set[str]:
        answer = client.get("/workbench/reviews", params=params)
        assert answer.status_code == 200
        return set(re.findall(r'data-review="(\d+)"', answer.text))

    with _signed_in(hub, "civil") as client:
        assert listed(client) == {"1", "2"}
        assert listed(client, department="mz_dibao") == {"1"}
        assert listed(client, department="other") == {"1", "2"}
        assert listed(client, department="own") == set()
        # pair 1 at 0.8, pair 2 at 0.7 (give or take a rounding): each in one band only
        upper, lower = listed(client, reason="grey_zone", band="0.7-0.9"), listed(client, band="0.5-0.7")
        assert "1" in upper and upper | lower == {"1", "2"} and not upper & lower
        assert listed(client, band="0.9-1") == set() and listed(client, reason="constraint") == set()
        assert listed(client, waited="1") == set()  # queued just now


def test_a_steward_moves_its_own_record_out_with_a_reason_and_nothing_of_another_department(hub):
    with _signed_in(hub, "civil") as client:
        token = _csrf(client)
        # no reason: refused on the master's page, nothing recorded
        answer = client.post("/workbench/masters/M000000005/split", data={"csrf": token, "records": "mz_canji/C2"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/workbench/masters/M000000005?refused=reason_needed#refused"
        shown = client.get(answer.headers["location"])
        assert shown.status_code == 409 and "请填写理由" in shown.text and "Give a reason" in shown.text
        assert "--reason" not in shown.text and "(reason)" not in shown.text
        # another department's record under the master: as if it did not exist
        answer = client.post("/workbench/masters/M000000005/move-out",
                             data={"csrf": token, "record": "rs_yiliao/Y2", "reason": "not ours"})
        assert answer.status_code == 404
        assert _decisions(hub["engine"]) == 0
        answer = client.post("/workbench/masters/M000000005/move-out",
                             data={"csrf": token, "record": "mz_canji/C2", "reason": "另一人 another person"})
        assert answer.status_code == 303 and answer.headers["location"] == "/workbench/masters/M000000005?done=move_out"
        page = client.get(answer.headers["location"]).text
        assert "移出" in page and "另一人 another person" in page and "rs_yiliao/Y2" not in page
        # the same move-out sent again, and four times at once: the decision in force, nothing new recorded
        from concurrent.futures import ThreadPoolExecutor

        form = {"csrf": token, "record": "mz_canji/C2", "reason": "另一人 another person"}

        def post(_):
            with httpx.Client(base_url=hub["base"], cookies=client.cookies, timeout=30) as c:
                return c.post("/workbench/masters/M000000005/move-out", data=form).status_code

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(post, range(4))) == [303] * 4
    with hub["engine"].connect() as conn:
        assert conn.execute(sa.text("SELECT kind, record_keys, master_id FROM mpi.decision")).all() == [
            ("move_out", ["mz_canji/C2"], "M000000005")]


def test_the_master_view_shows_golden_values_with_their_source_and_rule_as_the_department_may_see_them(hub):
    with hub["engine"].begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO mpi.golden_value (master_id, field, value, source, source_record_id, loaded_at, rule) VALUES"
            " ('M000000005', 'name', '孙立', 'rs_yiliao', 'Y2', now(), 'authority:social_security'),"
            " ('M000000005', 'phone', '+8613600005555', 'mz_dibao', 'D2', now(), 'frequency')"))
        conn.execute(sa.text(
            "INSERT INTO mpi.golden_conflict (master_id, field, value, sources, records, chosen) VALUES"
            " ('M000000005', 'name', '孙立', ARRAY['rs_yanglao', 'rs_yiliao'], 2, true),"
            " ('M000000005', 'name', '周红', ARRAY['mz_canji', 'mz_dibao'], 2, false)"))
    try:
        with _signed_in(hub, "civil") as client:
            page = client.get("/workbench/masters/M000000005").text
            golden = page.split('class="golden"')[1].split("</table>")[0]
            # another department's record gave the name: its key is not named; the rule is in words
            assert "孙*" in golden and "孙立" not in golden and "rs_yiliao/Y2" not in golden
            assert "其他部门的记录" in golden and "权威来源" in golden and "authority:social_security" in golden
            assert "mz_dibao/D2" in golden and "136****5555" in golden and "多数记录的取值" in golden
            conflicts = page.split('class="conflicts"')[1].split("</table>")[0]
            assert "周*" in conflicts and "mz_canji" in conflicts and "rs_yiliao" not in conflicts
            assert "+2 个其他部门来源" in conflicts
            full = client.get("/workbench/masters/M000000005", params={"purpose": "mz-dibao-review"}).text
            assert "孙立" in full and "周红" in full and "+8613600005555" in full
        with _signed_in(hub, "social") as client:  # 人社 may not see phones (不予共享): withheld, purpose or not
            page = client.get("/workbench/masters/M000000005", params={"purpose": "rs-pension-qualification"}).text
            golden = page.split('class="golden"')[1].split("</table>")[0]
            assert "孙立" in golden and "5555" not in golden and "不予共享" in golden
    finally:
        with hub["engine"].begin() as conn:
            conn.execute(sa.text("DELETE FROM mpi.golden_conflict WHERE master_id = 'M000000005'"))
            conn.execute(sa.text("DELETE FROM mpi.golden_value WHERE master_id = 'M000000005'"))


def test_the_pair_page_logs_every_record_it_shows_and_a_refused_match_leads_to_a_page_saying_why(hub):
    engine = hub["engine"]
    since, before = _last(engine), _decisions(engine)
    with _signed_in(hub, "social") as client:  # pair 3: both records social security's, under M000000005
        assert client.get("/workbench/reviews/3").status_code == 200
    with _signed_in(hub, "civil") as client:
        # pair 1: two different valid ID numbers; a "match" ends in a redirect to the pair's page saying why
        answer = client.post("/workbench/reviews/1/decision", data={"csrf": _csrf(client), "decision": "match",
                                                                     "band": "0.7-0.9"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/workbench/reviews/1?band=0.7-0.9&refused=match#refused"
        shown = client.get(answer.headers["location"])
        assert shown.status_code == 409  # a reload asks again, records nothing
        alert = shown.text.split('id="refused"')[1].split("</section>")[0]
        assert "两个各自有效的不同身份证号" in alert and "two different ID numbers" in alert
        assert "数据中心" in alert and "no form to detach an ID number" in alert and "（按 n）" in alert
        assert "/v1/" not in alert and "POST" not in alert and "rs_yanglao" not in alert  # no API route, no other record
        assert "mz_dibao/D1" in alert and 'href="/workbench/masters/M000000001"' in alert
        # a refusal asked for where a decision would be accepted: the plain page
        plain = client.get("/workbench/reviews/1", params={"refused": "bogus"})
        assert plain.status_code == 422
    assert _decisions(engine) == before
    rows = _log_since(engine, since)
    pages = [(r[0], r[3], r[4], r[5]) for r in rows if "/workbench/reviews/" in r[0]]
    assert pages[0] == ("GET /workbench/reviews/3", 200, 2, ["M000000005"])  # both records of the pair
    assert pages[1][:2] == ("POST /workbench/reviews/1/decision", 303)
    assert pages[2][:3] == ("GET /workbench/reviews/1", 409, 1)


def test_a_decision_sent_again_or_in_parallel_is_recorded_once(hub):
    from concurrent.futures import ThreadPoolExecutor

    engine = hub["engine"]
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM mpi.decision WHERE review_id = 2")).scalar_one()
    assert before == 0
    with _signed_in(hub, "civil") as client:
        form = {"csrf": _csrf(client), "decision": "not_a_match", "comment": "不同门牌 different houses"}

        def post(_):
            with httpx.Client(base_url=hub["base"], cookies=client.cookies, timeout=30) as c:
                return c.post("/workbench/reviews/2/decision", data=form)

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, range(4)))
        assert [a.status_code for a in answers] == [303] * 4
        assert all("/workbench/reviews/2" not in a.headers["location"] for a in answers)  # on to the next pair
        # pressed again, without the comment: still the decision in force
        again = client.post("/workbench/reviews/2/decision", data={**form, "comment": ""})
        assert again.status_code == 303
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT kind, comment FROM mpi.decision WHERE review_id = 2")).all() == [
                ("not_a_match", "不同门牌 different houses")]
        # a new reason is a new decision, superseding the first
        assert client.post("/workbench/reviews/2/decision",
                           data={**form, "comment": "户籍核实 household register"}).status_code == 303
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM mpi.decision WHERE review_id = 2")).scalar_one() == 2
