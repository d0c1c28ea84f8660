"""``hub release diff`` and the change feed's classification on two small hand-built releases.

Release 1 holds M1…M5; release 2 drops M2 (merged into M1), M4 (its records deleted), adds M6 (two
records split off M3) and M7 (a birth), and changes M1 (its records), M5 (died). The diff must name each
of them once, in its class, and nothing else; the feed of a department must tell the same, cut to its view.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

HUB = str(Path(sys.executable).with_name("hub"))
PERSON = ("INSERT INTO publish.master_person (release_no, master_id, name, id_number_status, sex, birth_date,"
          " record_count, sources, status, status_date, conflicts)"
          " VALUES (:n, :m, :name, 'valid', 1, DATE '1950-01-01', :rc, CAST(:src AS text[]), :st, CAST(:sd AS date), 0)")
ENROLMENT = ("INSERT INTO publish.enrolment (release_no, master_id, source, source_record_id, department, program,"
             " status_raw) VALUES (:n, :m, :s, :r, :d, 'p', :st)")
SOURCES = {"mz_dibao": "civil_affairs", "rs_yanglao": "social_security", "wj_chusheng": "health"}


def _release(conn, n: int, persons: dict[str, tuple], enrolments: list[tuple]) -> None:
    conn.execute(sa.text("INSERT INTO publish.release (release_no, master_count, record_count, content_hash,"
                         " validation_run_id) VALUES (:n, :c, :r, :h, 0)"),
                 {"n": n, "c": len(persons), "r": len(enrolments), "h": f"h{n}"})
    for m, (name, status) in persons.items():
        own = [e for e in enrolments if e[0] == m]
        conn.execute(sa.text(PERSON), {"n": n, "m": m, "name": name, "rc": len(own),
                                       "src": sorted({e[1] for e in own}), "st": status,
                                       "sd": "2026-12-01" if status == "deceased" else None})
    for m, source, record, status in enrolments:
        conn.execute(sa.text(ENROLMENT), {"n": n, "m": m, "s": source, "r": record, "d": SOURCES[source],
                                          "st": status})


@pytest.fixture
def releases(clean_warehouse):
    engine = clean_warehouse
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO mpi.master (master_id, anchor) SELECT 'M' || i, 'a' || i FROM generate_series(1, 7) i"))
        conn.execute(sa.text("UPDATE mpi.master SET status = 'retired', retired_into = 'M1' WHERE master_id = 'M2'"))
        alive = "alive"
        _release(conn, 1, {"M1": ("甲", alive), "M2": ("甲", alive), "M3": ("乙", alive), "M4": ("丙", alive),
                           "M5": ("丁", alive)},
                 [("M1", "mz_dibao", "1", "在保"), ("M2", "rs_yanglao", "2", "正常"), ("M3", "mz_dibao", "3", "在保"),
                  ("M3", "rs_yanglao", "3", "正常"), ("M3", "wj_chusheng", "3", "登记"), ("M4", "mz_dibao", "4", "在保"),
                  ("M5", "rs_yanglao", "5", "正常")])
        _release(conn, 2, {"M1": ("甲", alive), "M3": ("乙", alive), "M5": ("丁", "deceased"), "M6": ("乙", alive),
                           "M7": ("戊五", alive)},
                 [("M1", "mz_dibao", "1", "在保"), ("M1", "rs_yanglao", "2", "正常"), ("M3", "mz_dibao", "3", "在保"),
                  ("M6", "rs_yanglao", "3", "正常"), ("M6", "wj_chusheng", "3", "登记"), ("M5", "rs_yanglao", "5", "停发"),
                  ("M7", "wj_chusheng", "7", "登记")])
        conn.execute(sa.text("INSERT INTO publish.current_release (release_no) VALUES (2)"))
    return engine


def test_the_diff_names_each_differing_master_once_in_its_class(releases):
    run = subprocess.run([HUB, "release", "diff", "1", "2", "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    diff = json.loads(run.stdout)
    assert diff["added"] == ["M6", "M7"]
    assert diff["removed"] == ["M4"]
    assert diff["merged"] == [{"master_id": "M2", "survivor": "M1"}]
    assert diff["split"] == [{"master_id": "M3", "into": ["M6"]}]
    assert diff["deceased"] == ["M5"]
    assert {c["master_id"]: c["fields"] for c in diff["changed"]} == {
        "M1": ["record_count", "sources"], "M3": ["record_count", "sources"], "M5": ["status", "status_date"]}
    assert [c["master_id"] for c in diff["changed"]] == ["M1", "M3", "M5"]
    assert diff["counts"]["differing"] == 7
    from typer.testing import CliRunner

    from hub.cli import app

    table = CliRunner().invoke(app, ["release", "diff", "1", "2"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "7 masters differ" in table.stdout and "into M1" in table.stdout
    unknown = CliRunner().invoke(app, ["release", "diff", "1", "3"])
    assert unknown.exit_code == 1 and "there is no release 3" in unknown.stderr


def test_the_feed_of_a_department_tells_the_same_cut_to_its_own_programmes(releases):
    from warehouse.changes import read_changes, record_changes

    with releases.begin() as conn:
        counts = record_changes(conn, 2)
        assert record_changes(conn, 2) == counts  # written once
    with releases.connect() as conn:
        health = read_changes(conn, "health", 1)["events"]
    kinds = [(e["kind"], e["master_id"]) for e in health]
    # every department sees every master; its own enrolments only, and its own sources and record counts
    assert kinds == [("merged", "M2"), ("split", "M3"), ("removed", "M4"), ("added", "M6"), ("added", "M7"),
                     ("changed", "M3"), ("deceased", "M5"), ("enrolment_moved", "M6"), ("enrolment_added", "M7")]
    by_kind = {e["kind"]: e for e in health}
    assert by_kind["merged"]["survivor"] == "M1" and by_kind["split"]["into"] == ["M6"]
    assert by_kind["changed"]["fields"] == {"record_count": 0, "sources": []}  # its record went to M6
    assert by_kind["deceased"]["fields"] == {"status": "deceased", "status_date": "2026-12-01"}
    assert by_kind["enrolment_moved"]["from"] == "M3" and by_kind["enrolment_moved"]["to"] == "M6"
    assert by_kind["enrolment_moved"]["fields"] == {"master_id": "M6"}
    assert [e["event_id"] for e in health] == [f"2-{i}" for i in range(1, len(health) + 1)]


def test_hub_changes_lists_the_feed_masked_and_names_a_bad_release(releases):
    from typer.testing import CliRunner

    from hub.cli import app

    run = CliRunner().invoke(app, ["changes", "--department", "health", "--since", "1", "--json"])
    assert run.exit_code == 0, run.stderr
    page = json.loads(run.stdout)
    assert [e["event_id"] for e in page["events"]] == [f"2-{i}" for i in range(1, 10)]
    added = {e["master_id"]: e["person"] for e in page["events"] if e["kind"] == "added"}
    assert added["M7"]["name"] == "戊*" and added["M7"]["birth_date"] == "1950-01-01"  # names masked on a terminal
    paged = CliRunner().invoke(app, ["changes", "--department", "health", "--since", "1", "--limit", "4"],
                               env={"COLUMNS": "200"})
    assert paged.exit_code == 0 and "--cursor 2-4" in paged.stdout
    bad = CliRunner().invoke(app, ["changes", "--department", "health", "--since", "5"])
    assert bad.exit_code == 1 and "--since: there is no release 5" in bad.stderr
    other = CliRunner().invoke(app, ["changes", "--department", "tax", "--since", "1"])
    assert other.exit_code == 1 and "not a department" in other.stderr


def test_hub_webhook_add_list_remove_never_show_the_secret(releases):
    from typer.testing import CliRunner

    from hub.cli import app

    secret = "a-shared-secret-of-32-characters"
    url = "https://wj.example.gov.cn/hub-events?token=t0ken"
    added = CliRunner().invoke(app, ["webhook", "add", "--department", "health", "--url", url],
                               env={"HUB_WEBHOOK_SECRET": secret})
    assert added.exit_code == 0, added.stderr
    assert "after 2" in added.stdout and "t0ken" not in added.stdout and secret not in added.stdout
    short = CliRunner().invoke(app, ["webhook", "add", "--department", "health", "--url", url],
                               env={"HUB_WEBHOOK_SECRET": "short"})
    assert short.exit_code == 1 and "--secret: at least 16 characters" in short.stderr
    listed = CliRunner().invoke(app, ["webhook", "list", "--json"])
    hooks = json.loads(listed.stdout)
    assert [(h["department"], h["url"], h["pending"], h["from_release"]) for h in hooks] == [
        ("health", "https://wj.example.gov.cn/hub-events", 0, 2)]
    assert secret not in listed.stdout + listed.stderr
    with releases.connect() as conn:  # kept for signing
        assert conn.execute(sa.text("SELECT secret FROM publish.webhook")).scalar_one() == secret
    assert CliRunner().invoke(app, ["webhook", "remove", "--department", "health"]).exit_code == 0
    again = CliRunner().invoke(app, ["webhook", "remove", "--department", "health"])
    assert again.exit_code == 1 and "health has no webhook" in again.stderr


def test_after_a_rollback_the_withdrawn_release_leaves_the_feed(releases):
    from warehouse.changes import FeedError, previous_release, read_changes, record_changes
    from warehouse.releases import rollback

    with releases.begin() as conn:
        record_changes(conn, 2)
        rollback(conn, 1, reason="wrong merge", actor="operator")
    with releases.connect() as conn:
        assert read_changes(conn, "health", 1)["events"] == []  # release 2 is no longer in force
        with pytest.raises(FeedError, match="release 2 was withdrawn by a rollback"):
            read_changes(conn, "health", 2)
        with pytest.raises(FeedError, match="cursor: not a cursor"):
            read_changes(conn, "health", 1, cursor="2;DROP")
        # the next release is compared with release 1, the one in force before it
        conn.execute(sa.text("INSERT INTO publish.release (release_no, master_count, record_count, content_hash,"
                             " validation_run_id) VALUES (3, 0, 0, 'h3', 0)"))
        assert previous_release(conn, 3) == 1


def test_differing_lists_the_masters_and_enrolments_that_differ_and_nothing_else(releases):
    """What the change feed compares: every master whose row or any of whose enrolments differs, and the
    enrolments that differ; M1's dibao record and M3's, the same in both releases, are left out."""
    from warehouse.release_diff import differing

    with releases.connect() as conn:
        masters, records = differing(conn, 1, 2)
        # M1 gained M2's record (and M2 lost it), M3's records went to M6, M4 was removed, M5 died, M7 was born
        assert masters == ["M1", "M2", "M3", "M4", "M5", "M6", "M7"]
        assert records == [("mz_dibao", "4"), ("rs_yanglao", "2"), ("rs_yanglao", "3"), ("rs_yanglao", "5"),
                           ("wj_chusheng", "3"), ("wj_chusheng", "7")]
        conn.execute(sa.text("INSERT INTO publish.release (release_no, master_count, record_count, content_hash,"
                             " validation_run_id) VALUES (3, 5, 7, 'h3', 0)"))
        for table in ("master_person", "enrolment"):  # release 3: release 2 again
            conn.execute(sa.text(
                f"INSERT INTO publish.{table} SELECT (x).* FROM (SELECT jsonb_populate_record(NULL::publish.{table},"
                f" to_jsonb(t) || jsonb_build_object('release_no', 3)) AS x FROM publish.{table} t"
                " WHERE t.release_no = 2) s"))
        assert differing(conn, 2, 3) == ([], [])
        conn.execute(sa.text("UPDATE publish.enrolment SET status_raw = '停发' WHERE release_no = 3"
                             " AND source = 'mz_dibao' AND source_record_id = '1'"))
        assert differing(conn, 2, 3) == (["M1"], [("mz_dibao", "1")])
