"""Steward decisions that cannot corrupt the index, on small hand-built residents in a real warehouse.

A "match" that would put two people in one master is refused (CLI and API); decisions are an
append-only history in which a new decision supersedes, never erases; a split, a move-out and a
detached ID number are honoured by the incremental run after them and by a full rebuild.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from schemas.resident import standardize_frame
from tests.mpi.test_link import TODAY, make_id

HUB = str(Path(sys.executable).with_name("hub"))
HOUSE, PHONE = "城关镇张庄村3组12号", "13800000001"
TWIN_A, TWIN_B = make_id("2015-08-01", "031"), make_id("2015-08-01", "033")
FAMILY, GONE, LI_MING = make_id("1970-02-03", "015"), make_id("1988-09-09", "024"), make_id("1980-03-05", "017")

ROWS = [
    # a background, so that the cases are not the whole county
    *({"source": "mz_gaoling", "source_record_id": f"B{i}", "name": n, "id_number": make_id(b, s), "sex": x,
       "birth_date": b, "address": f"临水镇南塘村{i}组{i}号", "phone": f"1390000{i:04d}"}
      for i, (n, b, s, x) in enumerate([("李娜", "1985-04-02", "004", "女"), ("王芳", "1979-11-30", "026", "女"),
                                         ("刘洋", "1992-07-15", "011", "男"), ("陈静", "1988-01-09", "048", "女"),
                                         ("杨勇", "1970-03-21", "031", "男"), ("赵敏", "2001-12-12", "062", "女")])),
    # twins: two valid ID numbers, same birth date, house and phone
    {"source": "wj_chusheng", "source_record_id": "T1", "name": "王子涵", "id_number": TWIN_A, "sex": "男",
     "birth_date": "2015-08-01", "address": HOUSE, "phone": PHONE},
    {"source": "wj_yuling", "source_record_id": "T1", "name": "王子涵", "id_number": TWIN_A, "sex": "男",
     "birth_date": "2015-08-01", "address": HOUSE, "phone": PHONE},
    {"source": "wj_chusheng", "source_record_id": "T2", "name": "王子轩", "id_number": TWIN_B, "sex": "男",
     "birth_date": "2015-08-01", "address": HOUSE, "phone": PHONE},
    # one person in three systems (to be split by a steward)
    *({"source": s, "source_record_id": "F1", "name": "陈建华", "id_number": FAMILY, "sex": "男",
       "birth_date": "1970-02-03", "address": "石店镇西岗村1组3号", "phone": "13700000003"}
      for s in ("mz_dibao", "rs_yanglao", "rs_yiliao")),
    # one person in two systems (one record to be moved out)
    *({"source": s, "source_record_id": "G1", "name": "周丽", "id_number": GONE, "sex": "女",
       "birth_date": "1988-09-09", "address": "临水镇北岗村2组5号", "phone": "13700000004"}
      for s in ("mz_dibao", "rs_yiliao")),
    # a father and his son of the same name, one house
    {"source": "mz_gaoling", "source_record_id": "P1", "name": "陈国强", "id_number": make_id("1958-05-05", "019"),
     "sex": "男", "birth_date": "1958-05-05", "address": "石店镇东岗村2组8号", "phone": "13700000008"},
    {"source": "wj_liudong", "source_record_id": "P2", "name": "陈国强", "id_number": None, "sex": "男",
     "birth_date": "1986-05-05", "address": "石店镇东岗村2组8号", "phone": "13700000008"},
    # 李明, and a record of another 李明 (no birth date, another village) carrying the first one's number
    {"source": "mz_dibao", "source_record_id": "D1", "name": "李明", "id_number": LI_MING, "sex": "男",
     "birth_date": "1980-03-05", "address": "城关镇张庄村5组1号", "phone": "13800000011"},
    {"source": "rs_yanglao", "source_record_id": "D2", "name": "李明", "id_number": LI_MING, "sex": "男",
     "birth_date": None, "address": "临水镇南塘村8组7号", "phone": "13911112222"},
]


def _hub(*args, timeout=300):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})  # tables wide enough not to wrap a cell


def _write_std(engine: sa.Engine, rows: list[dict]) -> None:
    """Standardize ``rows`` with the pipeline's code and store them in std.resident (with their raw records)."""
    from warehouse.standardized import insert_standardized

    std = standardize_frame(pd.DataFrame(rows), sex_codes={"男": 1, "女": 2}, today=TODAY)
    with engine.begin() as conn:
        batch = conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES ('test') RETURNING batch_id")).scalar_one()
        std["raw_record_id"] = [conn.execute(sa.text(
            "INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)"
            " VALUES (:s, :r, :h, '{}', :b, now()) RETURNING record_id"),
            {"s": r["source"], "r": r["source_record_id"], "h": uuid.uuid4().hex, "b": batch}).scalar_one()
            for r in rows]
        std["batch_id"], std["program"] = batch, None
        insert_standardized(conn, std)


def _crosswalk(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT source || '/' || source_record_id, master_id FROM mpi.crosswalk")).all())


def _match(*args: str) -> str:
    run = _hub("match", *args)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.fixture
def county(clean_warehouse):
    _write_std(clean_warehouse, ROWS)
    assert _match().startswith("full run")
    return clean_warehouse


def _twins_review(engine: sa.Engine) -> int:
    """The review pair of the twins: the one the run queued, else one as a run queues it (in a county this
    small, the shared house and phone are frequent values and the pair scores below the review threshold)."""
    with engine.begin() as conn:
        found = conn.execute(sa.text(
            "SELECT review_id FROM mpi.review_pair WHERE least(record_key_l, record_key_r) = 'wj_chusheng/T1'"
            " AND greatest(record_key_l, record_key_r) = 'wj_chusheng/T2'")).scalar()
        return found or conn.execute(sa.text(
            "INSERT INTO mpi.review_pair (record_key_l, record_key_r, match_probability, match_weight, review_reason,"
            " evidence) VALUES ('wj_chusheng/T1', 'wj_chusheng/T2', 0.93, 3.7, 'grey_zone', '{}') RETURNING review_id"
        )).scalar_one()


def test_a_match_of_two_people_is_refused_and_a_new_decision_supersedes_the_old(county, api_for):
    engine = county
    before = _crosswalk(engine)
    assert before["wj_chusheng/T1"] != before["wj_chusheng/T2"]
    review_id = _twins_review(engine)

    refused = _hub("review", "decide", str(review_id), "match", "--reviewer", "steward li")
    assert refused.returncode == 1
    error = " ".join(refused.stderr.split())
    assert "refused" in error and "two different ID numbers valid for their records" in error
    assert "hub review detach-id" in error and "not_a_match" in error
    assert TWIN_A not in refused.stderr and TWIN_B not in refused.stderr  # masked
    api, stewards = api_for
    steward = stewards["health"]  # the twins are on the health platforms
    answer = api.post(f"/v1/reviews/{review_id}/decision", headers=steward,
                      json={"decision": "match", "reviewer": "刘科长"})
    assert answer.status_code == 409 and answer.json()["detail"].startswith("refused: a match of")
    from hub.stewardship import DecisionRefused, check_match

    with engine.connect() as conn, pytest.raises(DecisionRefused, match="years apart in one master — most likely a"
                                                 " parent and child"):
        check_match(conn, "mz_gaoling/P1", "wj_liudong/P2")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM mpi.decision")).scalar_one() == 0

    first = _hub("review", "decide", str(review_id), "not_a_match", "--reviewer", "steward li", "--comment", "twins")
    assert first.returncode == 0, first.stderr
    second = _hub("review", "decide", str(review_id), "not_a_match", "--reviewer", "steward wang",
                  "--comment", "household register: two children")
    assert second.returncode == 0 and "supersedes decision 1" in " ".join(second.stdout.split())
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.execute(sa.text("UPDATE mpi.decision SET comment = 'rewritten'"))
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.execute(sa.text("DELETE FROM mpi.decision"))

    assert _match().startswith("incremental run")
    after = _crosswalk(engine)
    assert after["wj_chusheng/T1"] != after["wj_chusheng/T2"] and after == before

    master = after["wj_chusheng/T2"]
    shown = _hub("history", master, "--json")
    assert shown.returncode == 0, shown.stderr
    decisions = json.loads(shown.stdout)["decisions"]
    assert [(d["decision_id"], d["kind"], d["reviewer"], d["comment"], d["superseded_by"]) for d in decisions] == [
        (1, "not_a_match", "steward li", "twins", 2),
        (2, "not_a_match", "steward wang", "household register: two children", None)]
    assert all(d["review_id"] == review_id and d["decided_at"] for d in decisions)
    table = _hub("history", master)
    assert "superseded by 2" in table.stdout and "steward wang" in table.stdout
    listed = api.get(f"/v1/masters/{master}/decisions", headers=steward)
    assert listed.status_code == 200
    assert [(d["decision_id"], d["superseded_by"], d["reviewer"]) for d in listed.json()["decisions"]] == [
        (1, 2, "steward li"), (2, None, "steward wang")]
    assert api.get("/v1/masters/M999999999/decisions", headers=steward).status_code == 404
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT endpoint FROM audit.access_log ORDER BY 1")).scalars().all()
    assert f"GET /v1/masters/{master}/decisions" in logged


def test_a_split_and_a_move_out_are_honoured_by_incremental_runs_and_a_full_rebuild(county, api_for):
    engine = county
    before = _crosswalk(engine)
    family = before["mz_dibao/F1"]
    assert before["rs_yanglao/F1"] == before["rs_yiliao/F1"] == family
    assert before["mz_dibao/G1"] == before["rs_yiliao/G1"]
    api, stewards = api_for
    steward = stewards["civil_affairs"]
    # a steward acts on its own department's records only: another's answer as if they did not exist
    others = api.post(f"/v1/masters/{family}/split", headers=steward, json={
        "records": ["mz_dibao/F1", "rs_yanglao/F1", "rs_yiliao/F1"], "reviewer": "刘科长", "reason": "x"})
    assert others.status_code == 404 and others.json() == {"detail": "not found"}
    everything = _hub("review", "split", family, "--records", "mz_dibao/F1,rs_yanglao/F1,rs_yiliao/F1",
                      "--reviewer", "steward li", "--reason", "x")
    assert everything.returncode == 1 and "all the records" in everything.stderr

    split = _hub("review", "split", family, "--records", "rs_yanglao/F1,rs_yiliao/F1", "--reviewer", "steward li",
                 "--reason", "two people: the pension records are the father's")
    assert split.returncode == 0, split.stderr
    moved = _hub("review", "move-out", "rs_yiliao/G1", "--reviewer", "steward li", "--reason", "another person")
    assert moved.returncode == 0, moved.stderr
    wrong = _hub("review", "split", family, "--records", "mz_gaoling/B1", "--reviewer", "li", "--reason", "x")
    assert wrong.returncode == 1 and "not a record of" in wrong.stderr
    no_reason = _hub("review", "move-out", "mz_dibao/G1", "--reviewer", "li", "--reason", " ")
    assert no_reason.returncode == 1 and "needs a reason" in no_reason.stderr

    assert _match().startswith("incremental run")
    after = _crosswalk(engine)
    assert after["mz_dibao/F1"] == family  # the rest keeps the id
    assert after["rs_yanglao/F1"] == after["rs_yiliao/F1"] != family
    assert after["mz_dibao/G1"] == before["mz_dibao/G1"] != after["rs_yiliao/G1"]
    assert after["rs_yiliao/G1"] not in before.values()
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT event, cause FROM mpi.master_event WHERE master_id = :m AND run_id ="
                                      " (SELECT max(run_id) FROM mpi.link_run)"), {"m": family}).all()
    assert ("split", "steward_decision") in events

    assert _match("--full").startswith("full run")
    assert _crosswalk(engine) == after

    # the next day: a new record of the same person arrives; the decisions still hold
    _write_std(engine, [{**ROWS[-7], "source": "wj_liudong"}])
    assert _match().startswith("incremental run")
    day1 = _crosswalk(engine)
    assert day1["wj_liudong/F1"] == family and {k: day1[k] for k in after} == after


def test_a_detached_id_number_lets_two_records_part(county, api_for):
    engine = county
    before = _crosswalk(engine)
    master = before["mz_dibao/D1"]
    assert before["rs_yanglao/D2"] == master
    refused = _hub("review", "detach-id", "mz_gaoling/nobody", "--reviewer", "li", "--reason", "x")
    assert refused.returncode == 1 and "no standardized record" in refused.stderr

    api, stewards = api_for
    steward = stewards["social_security"]  # rs_yanglao is a social-security platform
    body = {"record": "rs_yanglao/D2", "reviewer": "刘科长", "reason": "the number is the other 李明's"}
    assert api.post("/v1/masters/M999999999/detach-id", headers=steward, json=body).status_code == 404
    # a record of another master, or of another department, answers as a record that does not exist
    stranger = api.post(f"/v1/masters/{master}/detach-id", headers=steward, json={**body, "record": "rs_yiliao/G1"})
    assert stranger.status_code == 404 and stranger.json() == {"detail": "not found"}
    foreign = api.post(f"/v1/masters/{master}/detach-id", headers=stewards["civil_affairs"], json=body)
    assert foreign.status_code == 404 and foreign.json() == {"detail": "not found"}
    detached = api.post(f"/v1/masters/{master}/detach-id", headers=steward, json=body)
    assert detached.status_code == 200, detached.text
    assert detached.json()["kind"] == "detach_id" and detached.json()["record_keys"] == ["rs_yanglao/D2"]
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT endpoint, status FROM audit.access_log")).all()
    assert (f"POST /v1/masters/{master}/detach-id", 200) in [tuple(r) for r in logged]
    assert _match().startswith("incremental run")
    after = _crosswalk(engine)
    assert after["mz_dibao/D1"] == before["mz_dibao/D1"] != after["rs_yanglao/D2"]
    with engine.connect() as conn:
        feature = conn.execute(sa.text("SELECT id_valid, id_body, id_claimed FROM mpi.match_feature"
                                       " WHERE record_key = 'rs_yanglao/D2'")).one()
    assert feature.id_valid is None and feature.id_body is None and feature.id_claimed == LI_MING
    assert _match("--full").startswith("full run")
    assert _crosswalk(engine) == after


def test_decisions_in_force_a_match_supersedes_the_split_that_kept_its_records_apart():
    from warehouse.stewardship import in_force, subject_of

    def decision(i, kind, keys, others=()):
        return {"decision_id": i, "kind": kind, "subject": subject_of(kind, keys), "record_keys": list(keys),
                "other_keys": list(others), "master_id": "M1"}

    force = in_force([decision(1, "split", ["a/2", "a/3"], ["a/1"]), decision(2, "detach_id", ["a/3"]),
                      decision(3, "not_a_match", ["b/1", "a/1"]), decision(4, "not_a_match", ["a/1", "b/1"])])
    assert force.superseded_by == {3: 4}
    assert force.pairs() == ([("a/2", "a/3")], [("a/1", "a/2"), ("a/1", "a/3"), ("a/1", "b/1")])
    assert force.detached() == {"a/3"} and force.leaving() == {"a/2": "M1", "a/3": "M1"}
    force.add(decision(5, "match", ["a/3", "a/1"]))
    assert force.superseded_by == {3: 4, 1: 5} and force.leaving() == {}
    assert force.pairs() == ([("a/1", "a/3")], [("a/1", "b/1")])


@pytest.fixture
def api_for(county):
    from hub.api import RateLimit, create_app
    from hub.api_keys import create_key
    from tests.test_api import _serve

    with county.begin() as conn:  # a steward sees the pairs and masters of its own department's sources
        keys = {d: create_key(conn, d, "data office", scopes=["steward"])
                for d in ("civil_affairs", "health", "social_security")}
    server, thread, url = _serve(create_app(county, rate_limit=RateLimit(per_second=100, burst=500)))
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client, {d: {"X-API-Key": k} for d, k in keys.items()}
    server.should_exit = True
    thread.join(5)
