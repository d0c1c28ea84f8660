"""The review queue, history and ``hub link --previous`` from the command line, as a steward uses them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

HUB = str(Path(sys.executable).with_name("hub"))
HEADER = ["source", "source_record_id", "name", "id_number", "sex", "birth_date", "phone", "address"]


def _hub(*args, timeout=300):
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def test_review_decide_match_and_history_of_the_retired_id(clean_warehouse, platforms):
    from hub import pipeline

    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    assert _hub("match").returncode == 0

    listed = _hub("review", "list", "--limit", "500")
    assert listed.returncode == 0, listed.stderr
    from hub.stewardship import DecisionRefused, check_match, detach_id

    with clean_warehouse.connect() as conn:
        pairs = conn.execute(sa.text(
            "SELECT p.review_id, p.record_key_l, p.record_key_r, cl.master_id AS ml, cr.master_id AS mr"
            " FROM mpi.review_pair p"
            " JOIN mpi.crosswalk cl ON cl.source || '/' || cl.source_record_id = p.record_key_l"
            " JOIN mpi.crosswalk cr ON cr.source || '/' || cr.source_record_id = p.record_key_r"
            # two master ids: a "match" merges one of them away
            " WHERE cl.master_id <> cr.master_id ORDER BY p.match_probability DESC")).all()

        def allowed(p, detach: str | None) -> bool:
            """Whether a "match" of the pair is allowed (after detaching ``detach``'s ID number); tried in a
            savepoint rolled back."""
            tx = conn.begin_nested()
            try:
                if detach:
                    detach_id(conn, detach, reviewer="trial", reason="trial")
                check_match(conn, p.record_key_l, p.record_key_r)
                return True
            except DecisionRefused:
                return False
            finally:
                tx.rollback()

        # the strongest pair a match is refused for (two valid ID numbers), that detaching one number allows
        pair, detach = next((p, k) for p in pairs if not allowed(p, None)
                            for k in (p.record_key_l, p.record_key_r) if allowed(p, k))
        ids = set(conn.execute(sa.text("SELECT id_number FROM std.resident WHERE id_number IS NOT NULL")).scalars())
    assert str(pair.review_id) in listed.stdout

    shown = _hub("review", "show", str(pair.review_id))
    assert shown.returncode == 0, shown.stderr
    assert "match weight" in shown.stdout and "name" in shown.stdout
    assert not any(i in shown.stdout for i in ids), "a full ID number was printed"

    bad = _hub("review", "decide", str(pair.review_id), "maybe", "--reviewer", "li")
    assert bad.returncode == 1 and "unknown decision" in bad.stderr
    refused = _hub("review", "decide", str(pair.review_id), "match", "--reviewer", "steward li")
    assert refused.returncode == 1 and "refused" in refused.stderr and "detach-id" in refused.stderr
    assert not any(i in refused.stderr for i in ids), "a full ID number was printed"
    detached = _hub("review", "detach-id", detach, "--reviewer", "steward li", "--reason", "a relative's number")
    assert detached.returncode == 0, detached.stderr
    decided = _hub("review", "decide", str(pair.review_id), "match", "--reviewer", "steward li",
                   "--comment", "same person: household register")
    assert decided.returncode == 0, decided.stderr

    rerun = _hub("match")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("incremental run"), rerun.stdout
    with clean_warehouse.connect() as conn:
        status = dict(conn.execute(sa.text("SELECT master_id, status FROM mpi.master WHERE master_id IN (:a, :b)"),
                                   {"a": pair.ml, "b": pair.mr}).all())
        cause = conn.execute(sa.text("SELECT cause FROM mpi.master_event WHERE event = 'merged'"
                                     " AND master_id IN (:a, :b)"), {"a": pair.ml, "b": pair.mr}).scalar_one()
    assert sorted(status.values()) == ["active", "retired"] and cause == "steward_decision"
    retired = next(m for m, s in status.items() if s == "retired")
    survivor = next(m for m, s in status.items() if s == "active")

    history = _hub("history", retired)
    assert history.returncode == 0, history.stderr
    assert f"redirects to {survivor}" in history.stdout
    assert "merged" in history.stdout and "steward_decision" in history.stdout and "steward li" in history.stdout
    unknown = _hub("history", "M999999999")
    assert unknown.returncode == 1 and "no master id" in unknown.stderr


def test_link_previous_keeps_master_ids(tmp_path):
    rows = [
        ["mz", "1", "张伟", "11010519491231002X", "女", "1949-12-31", "13812345678", "城关镇东湖村3组12号"],
        ["rs", "10", "张伟", "11010519491231002x", "2", "19491231", "138-1234-5678", ""],
        ["mz", "2", "李娜", "34052419800101002X", "女", "1980-01-01", "13812345670", "城关镇东湖村3组14号"],
        ["mz", "3", "王芳", "无", "女", "1990-05-06", "", "石店镇西岗村1组3号"],
    ]
    first = tmp_path / "day0.csv"
    pd.DataFrame(rows, columns=HEADER).to_csv(first, index=False)
    assert _hub("link", str(first), "--out", str(tmp_path / "xw0.csv")).returncode == 0
    xw0 = pd.read_csv(tmp_path / "xw0.csv", dtype=str, encoding="utf-8-sig")
    old = dict(zip(xw0["source"] + "/" + xw0["source_record_id"], xw0["master_id"]))

    # the next file: rows reordered, one record gone, a new one joining 李娜, a new person
    nxt = [rows[3], rows[2], ["wj", "7", "李娜", "34052419800101002X", "女", "1980-01-01", "", ""],
           ["wj", "8", "赵强", "", "男", "1975-02-02", "", "临水镇南塘村2组1号"], rows[0]]
    second = tmp_path / "day1.csv"
    pd.DataFrame(nxt, columns=HEADER).to_csv(second, index=False)
    result = _hub("link", str(second), "--out", str(tmp_path / "xw1.csv"), "--previous", str(tmp_path / "xw0.csv"))
    assert result.returncode == 0, result.stderr
    xw1 = pd.read_csv(tmp_path / "xw1.csv", dtype=str, encoding="utf-8-sig")
    new = dict(zip(xw1["source"] + "/" + xw1["source_record_id"], xw1["master_id"]))
    for key in ("mz/1", "mz/2", "mz/3"):
        assert new[key] == old[key]
    assert new["wj/7"] == old["mz/2"]
    assert new["wj/8"] not in old.values()
    assert "kept from" in result.stdout

    broken = tmp_path / "broken.csv"
    broken.write_text("source,source_record_id\nmz,1\n", encoding="utf-8")
    refused = _hub("link", str(second), "--out", str(tmp_path / "xw2.csv"), "--previous", str(broken))
    assert refused.returncode == 1 and "lacks the column(s) master_id" in refused.stderr
