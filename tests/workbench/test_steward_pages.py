"""A civil-affairs steward works the workbench in Debian's Chromium with the network cut off, on the simulated
county published once for this module and served as the API's own database role: signs in, opens the review
queue, decides a pair with the keyboard only, sees why a match of two people is refused, splits a master on the
master view — and the next matching run honours both. The waterfall of the pair draws; no request left
127.0.0.1. Screenshots: reviews.png, review-pair.png, review-refused.png, master.png."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa

from hub.api_keys import create_key
from hub.errors import HubError
from hub.stewardship import DecisionRefused, check_match, list_reviews, move_out
from tests.helpers import empty_warehouse, publish_day0
from tests.workbench.browser import artefact_path, open_browser, served_as_api_role, sign_in
from warehouse.sharing import load_sharing
from warehouse.stewardship import master_records, masters_of

PREFIX = f"hub_s{secrets.token_hex(4)}_"
CIVIL = ("mz_",)


def _wrong_move_out(engine) -> None:
    """A record of civil affairs moved out of its master by mistake (by the hub's staff, on the command line's
    path) and the index matched again: the record is apart, and its pair with the master's other record — scored
    by the run, stored with its evidence — is queued as one the matcher may not link (``constraint:steward``).
    The county of day 0 has no grey pair of civil affairs a match is accepted for: this is the one."""
    from hub.pipeline import build_master_index
    from warehouse.matching_state import read_edges

    with engine.begin() as conn:
        master = conn.execute(sa.text(
            "SELECT c.master_id FROM mpi.crosswalk c WHERE NOT EXISTS (SELECT 1 FROM mpi.review_pair p"
            "  WHERE p.record_key_l = c.source || '/' || c.source_record_id"
            "     OR p.record_key_r = c.source || '/' || c.source_record_id)"
            " GROUP BY c.master_id HAVING count(*) = 2 AND bool_or(c.source LIKE 'mz\\_%')"
            " AND NOT bool_and(c.source LIKE 'mz\\_%') ORDER BY c.master_id LIMIT 1")).scalar_one()
        keys = [f"{r['source']}/{r['source_record_id']}" for r in master_records(conn, master)]
        record = next(k for k in keys if k.startswith(CIVIL))
        move_out(conn, record, reviewer="data office", reason="looked like another person")
    build_master_index()
    with engine.begin() as conn:
        edge = read_edges(conn, touching=[record]).query("record_key_l in @keys and record_key_r in @keys").iloc[0]
        conn.execute(sa.text(
            "INSERT INTO mpi.review_pair (record_key_l, record_key_r, match_probability, match_weight, review_reason,"
            " evidence) VALUES (:l, :r, :p, :w, 'constraint:steward', CAST(:e AS jsonb))"),
            {"l": edge.record_key_l, "r": edge.record_key_r, "p": float(edge.match_probability),
             "w": float(edge.match_weight), "e": edge.evidence})


@pytest.fixture(scope="module")
def hub(engine, database_url, _served_platforms, county):
    """The county of day 0 published, with one record moved out of its master by mistake; the department roles
    and the API's role of this module; the app on loopback as the API's role; a civil-affairs steward's key."""
    publish_day0(engine, _served_platforms, county)
    _wrong_move_out(engine)
    with engine.begin() as conn:
        key = create_key(conn, "civil_affairs", "civil affairs data office", scopes=["steward"])
    try:
        with served_as_api_role(engine, database_url, PREFIX) as base:
            yield {"base": base, "key": key, "engine": engine}
    finally:
        empty_warehouse(engine)


def _pairs(engine) -> tuple[list[dict], dict | None, dict | None]:
    """The steward's open queue, its first pair a match is accepted for, and one it would be refused for."""
    viewer = load_sharing()["civil_affairs"]
    accepted = refused = None
    with engine.connect() as conn:
        queue = list_reviews(conn, status="open", limit=2000, viewer=viewer)
        for pair in queue:
            if accepted and refused:
                break
            left, right = (conn.execute(sa.text("SELECT record_key_l, record_key_r FROM mpi.review_pair"
                                                " WHERE review_id = :i"), {"i": pair["review_id"]}).one())
            masters = masters_of(conn, [left, right])
            if len(set(masters.values())) != 2:
                continue
            try:
                check_match(conn, left, right)
            except DecisionRefused:
                refused = refused or dict(pair, left=left, right=right)
            except HubError:
                continue
            else:
                accepted = accepted or dict(pair, left=left, right=right)
    return queue, accepted, refused


def _refused_pair(engine) -> dict:
    """A review pair of two civil-affairs records with different valid ID numbers under two masters (made by
    SQL: the county's queue held none a match would be refused for); the decision path stays real."""
    with engine.begin() as conn:
        rows = conn.execute(sa.text(
            "SELECT r.source || '/' || r.source_record_id AS key, c.master_id FROM std.resident r"
            " JOIN mpi.crosswalk c USING (source, source_record_id)"
            " WHERE r.source LIKE 'mz\\_%' AND r.id_number_status = 'valid'"
            " ORDER BY r.source, r.source_record_id LIMIT 50")).all()
        a = rows[0]
        b = next(r for r in rows[1:] if r.master_id != a.master_id)
        review_id = conn.execute(sa.text(
            "INSERT INTO mpi.review_pair (record_key_l, record_key_r, match_probability, match_weight, review_reason,"
            " evidence) VALUES (:l, :r, 0.51, 0.05, 'grey_zone', '{}') RETURNING review_id"),
            {"l": a.key, "r": b.key}).scalar_one()
    return {"review_id": review_id, "left": a.key, "right": b.key}


def _split_target(engine, avoid: set[str]) -> tuple[str, str, list[str]]:
    """A master of two or more records, one of them civil affairs', not touched by the pairs: (master id,
    the civil-affairs record to split off, the rest)."""
    with engine.connect() as conn:
        found = conn.execute(sa.text(
            "SELECT c.master_id FROM mpi.crosswalk c WHERE NOT EXISTS (SELECT 1 FROM mpi.review_pair p"
            "  WHERE p.record_key_l = c.source || '/' || c.source_record_id"
            "     OR p.record_key_r = c.source || '/' || c.source_record_id)"
            " GROUP BY c.master_id HAVING count(*) BETWEEN 2 AND 4 AND bool_or(c.source LIKE 'mz\\_%')"
            " ORDER BY c.master_id")).scalars().all()
        for master in found:
            if master in avoid:
                continue
            keys = [f"{r['source']}/{r['source_record_id']}" for r in master_records(conn, master)]
            mine = [k for k in keys if k.startswith(CIVIL)]
            return master, mine[0], [k for k in keys if k != mine[0]]
    raise AssertionError("no master of two records with a civil-affairs one in the county")


def _decisions(engine, review_id: int) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT kind, record_keys, comment FROM mpi.decision WHERE review_id = :i"), {"i": review_id})]


def test_a_steward_decides_by_keyboard_is_refused_splits_and_the_next_run_honours_both(hub):
    from hub.pipeline import build_master_index

    engine, base = hub["engine"], hub["base"]
    queue, accepted, refused = _pairs(engine)
    assert accepted is not None, "the county's queue holds no pair a match is accepted for"
    if refused is None:
        refused = _refused_pair(engine)
        queue, _, _ = _pairs(engine)
    with engine.connect() as conn:
        pair_masters = set(masters_of(conn, [accepted["left"], accepted["right"], refused["left"], refused["right"]])
                           .values())
    split_master, split_off, rest = _split_target(engine, pair_masters)
    position = [p["review_id"] for p in queue].index(accepted["review_id"])

    with open_browser() as browser:
        page = browser.new_page()
        sign_in(page, base, hub["key"], "/workbench/reviews")
        assert page.url.endswith("/workbench/reviews")
        rows = page.locator("tr[data-row]")
        assert rows.count() == len(queue) and rows.first.get_attribute("class") == "selected"
        page.screenshot(path=str(artefact_path("reviews.png")), full_page=False)

        # the keyboard only: j down to the pair, Enter opens it, c to the comment, Escape, m decides "match"
        for _ in range(len(queue) - 1):  # down to the last row, then back up to the pair
            page.keyboard.press("j")
        for _ in range(len(queue) - 1 - position):
            page.keyboard.press("k")
        assert page.locator("tr[data-row].selected").get_attribute("data-review") == str(accepted["review_id"])
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url.split("?")[0].endswith(f"/workbench/reviews/{accepted['review_id']}")
        bars = page.locator("figure.waterfall svg g.mark-rect path")
        assert bars.count() >= 4  # the prior, comparisons, the final score: the waterfall drew
        assert "先验" in page.inner_text("table.explanation")
        chart = page.inner_html("figure.waterfall")  # its words in Chinese, the English beside them
        assert "匹配权重瀑布图 Match weights waterfall chart" in chart and "姓名 name" in chart
        assert "比较 comparison" in chart and ">Column<" not in chart
        page.keyboard.press("c")
        page.keyboard.type("同一人：同名同生日，同一户 same person, same household")
        page.keyboard.press("Escape")
        page.screenshot(path=str(artefact_path("review-pair.png")), full_page=True)
        with page.expect_navigation():
            page.keyboard.press("m")
        # the next pair of the queue opens (or the queue, when it was the last)
        assert f"/workbench/reviews/{accepted['review_id']}" not in page.url
        assert "/workbench/reviews" in page.url
        assert _decisions(engine, accepted["review_id"]) == [
            ("match", sorted([accepted["left"], accepted["right"]]), "同一人：同名同生日，同一户 same person, same household")]

        # a match of two people is refused: the POST leads to the pair's page, which says why (409), nothing recorded
        page.goto(f"{base}/workbench/reviews/{refused['review_id']}")
        with page.expect_navigation(url=lambda u: "refused=match" in u) as shown, \
                page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.keyboard.press("m")
        assert answer.value.status == 303 and shown.value.status == 409
        alert = page.inner_text("#refused")
        assert "判定被拒绝" in alert and "拒绝：将" in alert and "Refused: a match of" in alert
        assert "不是同一人" in alert and "not a match" in alert and "/v1/" not in alert
        assert page.locator("#refused a[href^='/workbench/masters/']").count() >= 1  # where to act instead
        with page.expect_response(lambda r: r.url.startswith(base)) as again:
            page.reload()  # a reload asks again, sends no decision
        assert again.value.request.method == "GET" and again.value.status == 409
        assert _decisions(engine, refused["review_id"]) == []
        page.screenshot(path=str(artefact_path("review-refused.png")), full_page=False)

        # the master view: golden values with their rule, then split one civil-affairs record off
        page.goto(f"{base}/workbench/masters/{split_master}")
        assert page.locator("table.golden tr[data-field]").count() >= 3
        assert "决定规则" in page.inner_text("table.golden")
        page.check(f"[data-record='{split_off}'] input[name=records]")
        page.fill("textarea[name=reason]", "另一人的记录 a different person's record")
        page.screenshot(path=str(artefact_path("master.png")), full_page=True)
        with page.expect_navigation():
            page.click("form.split button[type=submit]")
        assert "done=" in page.url and page.locator("p.notice[role=status]").count() == 1
    assert browser.blocked == []
    # the browser notes the refusal's 409 in its console; nothing else went wrong on the pages
    assert [e for e in browser.console_errors if "409 (Conflict)" not in e] == []
    assert browser.requested and all(u.startswith(base) for u in browser.requested)

    # the decisions are in the access log, the refused one too: (path, status)
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT endpoint, status FROM audit.access_log WHERE endpoint LIKE 'POST %'"
                                      " ORDER BY access_id")).all()
    assert [tuple(r) for r in logged if "/login" not in r[0]] == [
        (f"POST /workbench/reviews/{accepted['review_id']}/decision", 303),
        (f"POST /workbench/reviews/{refused['review_id']}/decision", 303),
        (f"POST /workbench/masters/{split_master}/split", 303)]
    with engine.connect() as conn:  # the refusal shown, then reloaded: two page views answered 409
        assert conn.execute(sa.text("SELECT endpoint FROM audit.access_log WHERE status = 409")).scalars().all() == [
            f"GET /workbench/reviews/{refused['review_id']}"] * 2

    build_master_index()
    with engine.connect() as conn:
        now = masters_of(conn, [accepted["left"], accepted["right"], split_off, *rest])
    assert now[accepted["left"]] == now[accepted["right"]]
    assert all(now[split_off] != now[k] for k in rest)
