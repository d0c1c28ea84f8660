"""The change feed per department, its webhook and ``hub release diff``, over two releases of the simulated county.

Release 1 is day 0 (one record of a person kept apart from the rest by a steward's move-out); release 2 is
the next day with more births and deaths than usual, the move-out superseded by a match (a merge) and
another person split by a steward. For each department, its view of release 1 with the feed since
release 1 applied is its view of release 2. A department's webhook receiver on loopback refuses the first
event (500) and then gets every event exactly once, in order, signed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.helpers import match_day0

HUB = str(Path(sys.executable).with_name("hub"))
SECRET = "s3cret-of-the-health-office-0123"
WEBHOOK_DEPARTMENT = "health"


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A department's endpoint: the first POST answers 500, the others 200; every request is kept."""
    received: list[tuple[int, dict, bytes]] = []

    def do_POST(self):  # noqa: N802 — http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if not self.received else 200
        self.received.append((status, dict(self.headers), body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # keep the test output clean
        pass


def _views(engine: sa.Engine, departments: list[str]) -> dict[str, dict]:
    """Each department's master_person and enrolment views, read as its own role, as JSON-like rows."""
    from warehouse.serving import department_role

    out = {}
    with engine.connect() as conn:
        for d in departments:
            role = department_role(conn, d)
            conn.exec_driver_sql(f'SET ROLE "{role}"')
            persons = conn.execute(sa.text(f"SELECT to_jsonb(v) - 'release_no' FROM dept_{d}.master_person v")).scalars()
            enrolments = conn.execute(sa.text(f"SELECT to_jsonb(v) - 'release_no' FROM dept_{d}.enrolment v")).scalars()
            out[d] = {"persons": {p["master_id"]: p for p in persons},
                      "enrolments": {(e["source"], e["source_record_id"]): e for e in enrolments}}
            conn.exec_driver_sql("RESET ROLE")
        conn.rollback()
    return out


def _publish(*, ingest: bool = True) -> int:
    from hub import pipeline

    if ingest:
        for name in pipeline.source_names():
            pipeline.ingest_source(name)
        pipeline.standardize_sources()
    pipeline.build_master_index()
    release = pipeline.publish_release(pipeline.run_gate()["validation_run_id"])
    assert release["outcome"] == "published", release
    return release["release_no"]


def _records(conn, master_id: str) -> list[str]:
    return conn.execute(sa.text("SELECT source || '/' || source_record_id FROM mpi.crosswalk WHERE master_id = :m"
                                " ORDER BY 1"), {"m": master_id}).scalars().all()


@pytest.fixture(scope="module")
def two_releases(engine, _served_platforms, county):
    from hub import stewardship
    from simulators.county import DeltaSpec
    from tests.test_api import _with_department_views
    from warehouse.changes import add_webhook
    from warehouse.sharing import load_sharing

    match_day0(engine, _served_platforms, county)
    mp = pytest.MonkeyPatch()
    mp.setenv("HUB_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")  # the receiver of the test is on loopback, plain http
    with engine.begin() as conn:
        # two persons of records from three sources or more: one kept apart in two masters today and merged
        # again tomorrow, one split tomorrow
        merge_master, split_master = conn.execute(sa.text(
            "SELECT master_id FROM mpi.crosswalk GROUP BY master_id HAVING count(DISTINCT source) >= 3"
            " ORDER BY master_id LIMIT 2")).scalars().all()
        moved = _records(conn, merge_master)[0]
        stewardship.move_out(conn, moved, reviewer="steward li", reason="kept apart until checked")
    first = _publish(ingest=False)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hub-events?token=abc"
    with engine.begin() as conn:
        add_webhook(conn, WEBHOOK_DEPARTMENT, url, SECRET)
    departments = sorted(load_sharing())
    views = iter(_with_department_views(engine))
    next(views)
    before = _views(engine, departments)

    _served_platforms.advance(county.next_day(DeltaSpec(births=0.004, deaths=0.004)))
    with engine.begin() as conn:
        review_id = conn.execute(sa.text(
            "INSERT INTO mpi.review_pair (record_key_l, record_key_r, match_probability, match_weight, review_reason,"
            " evidence) VALUES (:l, :r, 0.9, 3.0, 'grey_zone', '{}') RETURNING review_id"),
            {"l": moved, "r": _records(conn, merge_master)[0]}).scalar_one()
        stewardship.decide(conn, review_id, "match", reviewer="steward li", comment="one person after all")
        taken = _records(conn, split_master)[:2]
        stewardship.split(conn, split_master, taken, reviewer="steward li", reason="two people")
    second = _publish()
    after = _views(engine, departments)
    yield {"engine": engine, "first": first, "second": second, "departments": departments, "before": before,
           "after": after, "split_master": split_master, "server": server}
    server.shutdown()
    next(views, None)
    _served_platforms.advance(county)
    mp.undo()


def _feed(engine, department: str, since: int, limit: int = 37) -> list[dict]:
    """Every event of the department's feed after ``since``, page by page with the cursor."""
    from warehouse.changes import read_changes

    events, cursor = [], None
    with engine.connect() as conn:
        while True:
            page = read_changes(conn, department, since, cursor=cursor, limit=limit)
            events += page["events"]
            cursor = page["next_cursor"]
            if cursor is None:
                return events


def test_replaying_the_feed_on_the_view_of_release_1_gives_the_view_of_release_2(two_releases):
    from warehouse.changes import apply_events

    r = two_releases
    assert r["second"] == r["first"] + 1
    kinds: dict[str, set[str]] = {}
    for d in r["departments"]:
        events = _feed(r["engine"], d, r["first"])
        assert [e["event_id"] for e in events] == [f"{r['second']}-{i}" for i in range(1, len(events) + 1)]
        persons = {k: dict(v) for k, v in r["before"][d]["persons"].items()}
        enrolments = {k: dict(v) for k, v in r["before"][d]["enrolments"].items()}
        assert persons != r["after"][d]["persons"]  # the day changed the department's view
        apply_events(persons, enrolments, events)
        assert persons == r["after"][d]["persons"], d
        assert enrolments == r["after"][d]["enrolments"], d
        kinds[d] = {e["kind"] for e in events}
        for e in events:
            if e["kind"] == "merged":  # a retired id comes with its survivor, a master of release 2
                assert e["master_id"] not in persons and e["survivor"] in persons
            if e["kind"] == "deceased":
                assert e["fields"]["status"] == "deceased"
            if e["kind"] == "split":
                assert e["master_id"] == r["split_master"] and all(m in persons for m in e["into"])
        # a department that sees only its own programmes gets only its own enrolments
        assert {ev["enrolment"]["department"] for ev in events if ev["kind"] == "enrolment_added"} <= {d}
    assert {"added", "changed", "deceased", "merged", "split", "enrolment_added", "enrolment_moved"} <= set().union(
        *kinds.values()), kinds
    # nothing after the current release; a release that does not exist is refused
    assert _feed(r["engine"], r["departments"][0], r["second"]) == []


def test_release_diff_lists_exactly_the_masters_whose_published_row_differs(two_releases):
    r = two_releases
    run = subprocess.run([HUB, "release", "diff", str(r["first"]), str(r["second"]), "--json"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    diff = json.loads(run.stdout)
    columns = "master_id, name, id_number, id_number_status, sex, birth_date, phone, address, status, status_date," \
              " record_count, sources, conflicts"
    with r["engine"].connect() as conn:
        expected = set(conn.execute(sa.text(
            f"(SELECT {columns} FROM publish.master_person WHERE release_no = :a"
            f" EXCEPT SELECT {columns} FROM publish.master_person WHERE release_no = :b)"
            f" UNION (SELECT {columns} FROM publish.master_person WHERE release_no = :b"
            f" EXCEPT SELECT {columns} FROM publish.master_person WHERE release_no = :a)"),
            {"a": r["first"], "b": r["second"]}).scalars())
        survivors = dict(conn.execute(sa.text(
            "SELECT master_id, retired_into FROM mpi.master WHERE status = 'retired'")).all())
    listed = [*diff["added"], *diff["removed"], *(m["master_id"] for m in diff["merged"]),
              *(c["master_id"] for c in diff["changed"])]
    assert len(listed) == len(set(listed)) == diff["counts"]["differing"]
    assert set(listed) == expected
    assert diff["merged"] and all(survivors[m["master_id"]] == m["survivor"] for m in diff["merged"])
    assert [s["master_id"] for s in diff["split"]] == [r["split_master"]]
    assert set(diff["split"][0]["into"]) <= set(diff["added"])
    assert diff["deceased"] and set(diff["deceased"]) <= {c["master_id"] for c in diff["changed"]}
    assert all(c["fields"] for c in diff["changed"])


def test_the_feed_through_the_api_is_the_departments_cut_to_its_purpose(two_releases):
    from hub.api import RateLimit, create_app
    from hub.api_keys import create_key
    from tests.test_api import _serve
    from warehouse.changes import cut_event

    r = two_releases
    engine = r["engine"]
    with engine.begin() as conn:
        key = create_key(conn, "health", "feed reader")
    server, thread, base = _serve(create_app(engine, rate_limit=RateLimit(per_second=100, burst=500)))
    try:
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": key}) as api:
            got, cursor = [], None
            while True:
                page = api.get("/v1/changes", params={"since_release": r["first"], "limit": 25,
                                                      **({"cursor": cursor} if cursor else {})})
                assert page.status_code == 200, page.text
                body = page.json()
                assert body["withheld"] == ["name", "id_number", "birth_date", "phone", "address"]
                got += body["events"]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            unlocked = api.get("/v1/changes", params={"since_release": r["first"], "limit": 1000},
                               headers={"X-Purpose": "wj-birth-followup"}).json()
            bad_cursor = api.get("/v1/changes", params={"since_release": r["first"], "cursor": "x"})
            unknown = api.get("/v1/changes", params={"since_release": 99})
            beyond = api.get("/v1/changes", params={"since_release": r["first"], "cursor": f"{r['second'] + 1}-1"})
    finally:
        server.should_exit = True
        thread.join(5)
    full = _feed(engine, "health", r["first"])
    assert got == [cut_event(e, ("master_id", "id_number_status", "sex", "status", "status_date", "record_count",
                                 "sources", "conflicts")) for e in full]
    born = [e for e in got if e["kind"] == "added"]
    assert born and all("name" not in e["person"] and "name" in e["withheld"] for e in born)
    assert unlocked["withheld"] == ["id_number"]
    # with a purpose, 有条件 values only of masters with an enrolment of health's own sources in the release
    with engine.connect() as conn:
        own = set(conn.execute(sa.text("SELECT master_id FROM publish.enrolment WHERE release_no = :n"
                                       " AND department = 'health'"), {"n": r["second"]}).scalars())
    shown = {True: 0, False: 0}
    for e in unlocked["events"]:
        values = e.get("person") or e.get("fields") if e["kind"] in ("added", "changed", "deceased") else None
        assert "id_number" not in (values or {}) and "own_enrolment" not in e
        conditional = {"name", "birth_date", "phone", "address"} & set(values or {}) | (
            {"name", "birth_date", "phone", "address"} & set(e.get("withheld") or []))
        if conditional:
            enrolled = e["master_id"] in own
            assert (conditional <= set(values)) is enrolled and set(e.get("withheld") or []).isdisjoint(
                conditional) is enrolled, e["event_id"]
            shown[enrolled] += 1
    assert shown[True] and shown[False], shown
    born = {e["master_id"] for e in unlocked["events"] if e["kind"] == "added" and e["master_id"] in own}
    assert born and all("name" in e["person"] for e in unlocked["events"] if e["master_id"] in born
                        and e["kind"] == "added")
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.json()["detail"]
    assert unknown.status_code == 422 and "there is no release 99" in unknown.json()["detail"]
    # a cursor after the current release is not one this feed gave: refused, not an empty page
    assert beyond.status_code == 422 and beyond.json()["detail"].startswith("cursor: release")
    with engine.connect() as conn:
        logged = conn.execute(sa.text(
            "SELECT status, results, purpose, cardinality(master_ids) FROM audit.access_log"
            " WHERE endpoint = 'GET /v1/changes' ORDER BY access_id")).all()
    assert [row[0] for row in logged] == [200] * (len(logged) - 3) + [422, 422, 422]
    assert sum(row[1] for row in logged[:-4]) == len(got) and logged[-4][2] == "wj-birth-followup"


def test_the_webhook_gets_every_event_once_in_order_after_a_failed_delivery(two_releases):
    r = two_releases
    engine = r["engine"]
    received = _Receiver.received
    # the publish tried the first event once: refused with 500, the rest held back behind it
    assert [status for status, _, _ in received] == [500]
    run = subprocess.run([HUB, "webhook", "deliver", "--now"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout + run.stderr and "token=abc" not in run.stdout + run.stderr
    events = _feed(engine, WEBHOOK_DEPARTMENT, r["first"])
    assert [status for status, _, _ in received] == [500] + [200] * len(events)
    delivered = [(headers, body) for status, headers, body in received if status == 200]
    assert [h["X-Hub-Event-Id"] for h, _ in delivered] == [e["event_id"] for e in events]
    for headers, body in delivered:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
        payload = json.loads(body)
        assert payload["department"] == WEBHOOK_DEPARTMENT and payload["event_id"] == headers["X-Hub-Event-Id"]
        assert "name" not in (payload.get("person") or {})  # no purpose: no 有条件 field
        assert "own_enrolment" not in payload
    assert received[0][1]["X-Hub-Event-Id"] == events[0]["event_id"] and received[0][2] == delivered[0][1]
    with engine.connect() as conn:
        states = conn.execute(sa.text("SELECT state, attempts FROM publish.webhook_outbox ORDER BY release_no, seq")).all()
        logged = conn.execute(sa.text("SELECT count(*) FROM audit.access_log WHERE endpoint LIKE 'WEBHOOK health %'"
                                      " AND status = 200")).scalar_one()
    assert states == [("delivered", 2)] + [("delivered", 1)] * (len(events) - 1)
    assert logged == len(events)
    again = subprocess.run([HUB, "webhook", "deliver"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 delivered, 0 pending" in again.stdout
    assert len(received) == len(events) + 1  # nothing delivered twice


def test_webhook_urls_on_loopback_private_or_metadata_hosts_or_plain_http_are_refused(two_releases, monkeypatch):
    from typer.testing import CliRunner

    from hub.cli import app
    from hub.webhooks import Backoff, deliver
    from warehouse.changes import add_webhook, remove_webhook

    monkeypatch.delenv("HUB_WEBHOOK_ALLOW_HOSTS")
    refused = {"https://169.254.169.254/latest/meta-data": "169.254.169.254 is not a public address (link-local)",
               "https://[fe80::1]/x": "fe80::1 is not a public address (link-local)",
               "https://127.0.0.1:8443/x": "127.0.0.1 is not a public address (loopback)",
               "https://localhost/x": "localhost (127.0.0.1) is not a public address (loopback)",
               "https://10.20.30.40/x": "10.20.30.40 is not a public address (private)",
               "https://[::ffff:192.168.1.1]/x": "is not a public address (private)",
               "https://224.0.0.1/x": "224.0.0.1 is not a public address (multicast)",
               "https://0.0.0.0/x": "0.0.0.0 is not a public address (unspecified)",
               "http://8.8.8.8/x": "8.8.8.8: plain http is refused"}
    for url, why in refused.items():
        run = CliRunner().invoke(app, ["webhook", "add", "--department", "civil_affairs", "--url", url],
                                 env={"HUB_WEBHOOK_SECRET": SECRET})
        assert run.exit_code == 1 and why in run.stderr and "HUB_WEBHOOK_ALLOW_HOSTS" in run.stderr, (url, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    allowed = CliRunner().invoke(app, ["webhook", "add", "--department", "civil_affairs", "--url",
                                       "http://127.0.0.1:9/x"],
                                 env={"HUB_WEBHOOK_SECRET": SECRET, "HUB_WEBHOOK_ALLOW_HOSTS": "10.0.0.0/8, 127.0.0.1"})
    assert allowed.exit_code == 0, allowed.stderr
    # a name accepted once and pointed at a forbidden address later: delivery checks the address again
    engine, port = two_releases["engine"], two_releases["server"].server_address[1]
    received = len(_Receiver.received)
    with engine.begin() as conn:
        hook = add_webhook(conn, "civil_affairs", f"https://localhost:{port}/x", SECRET)["webhook_id"]
        conn.execute(sa.text("INSERT INTO publish.webhook_outbox (webhook_id, department, release_no, seq)"
                             " SELECT :w, department, release_no, seq FROM publish.change_event"
                             " WHERE department = 'civil_affairs' ORDER BY release_no, seq LIMIT 1"), {"w": hook})
    try:
        [result] = deliver(engine, "civil_affairs", backoff=Backoff(attempts=1))
        with engine.connect() as conn:
            error = conn.execute(sa.text("SELECT last_error FROM publish.webhook_outbox WHERE webhook_id = :w"),
                                 {"w": hook}).scalar_one()
    finally:
        with engine.begin() as conn:
            remove_webhook(conn, "civil_affairs")
    assert (result["delivered"], result["pending"]) == (0, 1)
    assert error == "localhost (127.0.0.1) is not a public address (loopback): the hub does not post events there;" \
                    " if the department's receiver really is there, list it in HUB_WEBHOOK_ALLOW_HOSTS (host," \
                    " address or network)"
    assert len(_Receiver.received) == received  # nothing was posted
