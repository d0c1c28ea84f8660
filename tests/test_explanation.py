"""One explanation everywhere: ``hub explain --pair``, ``hub review show``, ``GET /v1/reviews/{id}`` and the
crosswalk give the same probability and the same weights for the same pair, term frequencies included."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from hub.api import create_app
from hub.api_keys import create_key
from schemas.id_number import check_character
from tests.test_api import _serve

HUB = str(Path(sys.executable).with_name("hub"))
CJK = re.compile(r"[\u4e00-\u9fff]")
HEADER = ["source", "source_record_id", "name", "id_number", "sex", "birth_date", "phone", "address"]


def _id(body17: str) -> str:
    return body17 + check_character(body17)


def _hub(*args, timeout=300):  # a wide terminal: table cells are not wrapped
    return subprocess.run([HUB, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, COLUMNS="240"))


def _rows(explained: dict) -> list[tuple]:
    return [(c["comparison"], c["level_code"], c["level"], c["level_zh"]) for c in explained["comparisons"]]


def _weights(explained: dict) -> list[float]:
    return [w for c in explained["comparisons"] for w in (c["match_weight"], c["tf_adjustment"])]


def _well_formed(explained: dict) -> None:
    total = explained["prior"]["weight"] + sum(c["match_weight"] + c["tf_adjustment"] for c in explained["comparisons"])
    assert total == pytest.approx(explained["match_weight"], abs=1e-6), "the weights do not add up to the match weight"
    assert {c["comparison"] for c in explained["comparisons"]} == {"id", "name", "dob", "sex", "phone", "address"}
    for c in explained["comparisons"]:
        assert c["level_code"] != "-1" and c["level_code"] != -1
        assert c["level"] and not c["level"].startswith("level ") and CJK.search(c["level_zh"]), c
        assert c["weight"] == pytest.approx(c["match_weight"] + c["tf_adjustment"])
    assert 2 ** explained["match_weight"] / (1 + 2 ** explained["match_weight"]) == pytest.approx(
        explained["match_probability"], rel=1e-9)


def _same(a: dict, b: dict) -> None:
    assert a["match_probability"] == pytest.approx(b["match_probability"], rel=1e-9, abs=1e-12)
    assert a["match_weight"] == pytest.approx(b["match_weight"], abs=1e-9)
    assert a["prior"]["weight"] == pytest.approx(b["prior"]["weight"], abs=1e-9)
    assert _rows(a) == _rows(b)
    assert _weights(a) == pytest.approx(_weights(b), abs=1e-9)


def test_explain_review_show_and_the_api_agree(clean_warehouse, platforms):
    from hub import pipeline

    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    matched = _hub("match")
    assert matched.returncode == 0, matched.stderr
    with clean_warehouse.connect() as conn:
        reviews = conn.execute(sa.text(
            "SELECT review_id, record_key_l, record_key_r, evidence FROM mpi.review_pair"
            " ORDER BY match_probability DESC, review_id")).all()
        ids = set(conn.execute(sa.text("SELECT id_number FROM std.resident WHERE id_number IS NOT NULL")).scalars())
    assert reviews, "the county left no pair for review"
    # a pair whose name or phone agreement is adjusted for how common the value is, and a pair with a null level
    tf = next(r for r in reviews if r.evidence.get("mw_tf_adj_name") or r.evidence.get("mw_tf_adj_phone"))
    null = next(r for r in reviews if r is not tf and any(  # a null level weighs 0
        v == 0 and k.startswith("mw_") and not k.startswith("mw_tf_adj_") for k, v in r.evidence.items()))
    from connectors.registry import source_departments

    departments = source_departments()  # a steward sees the pairs of its own department's sources
    with clean_warehouse.begin() as conn:
        stewards = {d: create_key(conn, d, "data office", scopes=["steward"]) for d in set(departments.values())}
    server, thread, url = _serve(create_app(clean_warehouse, rate_limit=None))
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            for review in (tf, null):
                explained = _hub("explain", "--pair", review.record_key_l, "--pair", review.record_key_r, "--json")
                assert explained.returncode == 0, explained.stderr
                [from_explain] = json.loads(explained.stdout)["pairs"]
                shown = _hub("review", "show", str(review.review_id), "--json")
                assert shown.returncode == 0, shown.stderr
                from_review = json.loads(shown.stdout)["explanation"]
                steward = stewards[departments[review.record_key_l.split("/", 1)[0]]]
                got = api.get(f"/v1/reviews/{review.review_id}", headers={"X-API-Key": steward})
                assert got.status_code == 200, got.text
                from_api = got.json()["explanation"]
                for one in (from_explain, from_review, from_api):
                    _well_formed(one)
                _same(from_explain, from_review)
                _same(from_explain, from_api)
                # the term-frequency adjustment is the one the matching run stored
                for c in from_explain["comparisons"]:
                    assert c["tf_adjustment"] == pytest.approx(review.evidence.get(f"mw_tf_adj_{c['comparison']}", 0.0),
                                                               abs=1e-9)
                for out in (explained.stdout, shown.stdout, got.text):
                    assert not any(i in out for i in ids), "a full ID number was shown"
    finally:
        server.should_exit = True
        thread.join(5)
    assert any(c["tf_adjustment"] for c in json.loads(_hub("review", "show", str(tf.review_id), "--json").stdout)
               ["explanation"]["comparisons"])
    text = _hub("review", "show", str(null.review_id))
    assert text.returncode == 0, text.stderr
    assert "一方或双方缺失" in text.stdout and "missing on one or both records" in text.stdout
    text = _hub("explain", "--pair", tf.record_key_l, "--pair", tf.record_key_r)
    assert text.returncode == 0, text.stderr
    assert "prior" in text.stdout and "match weight" in text.stdout and CJK.search(text.stdout)


def test_the_crosswalk_probability_is_the_explained_probability_of_the_strongest_link(tmp_path):
    """``hub link``'s crosswalk gives each record linked by probability the probability of its
    strongest accepted link; explaining that pair afresh gives the same number."""
    from mpi.explain import score_pair
    from mpi.matcher import THRESHOLD, Matcher
    from schemas.resident import standardize_frame

    zhang, li = _id("34152219750520013"), _id("34052419800101002")
    typo = zhang[:10] + str((int(zhang[10]) + 1) % 10) + zhang[11:]  # one digit off: the checksum fails
    rows = [
        ["mz", "1", "张建国", zhang, "男", "1975-05-20", "13912345678", "城关镇东湖村3组12号"],
        ["rs", "1", "张建国", typo, "男", "1975-05-20", "13912345678", "城关镇东湖村3组12号"],
        ["wj", "1", "张建国", "", "男", "1975-05-20", "13912345678", "城关镇东湖村3组12号"],
        ["mz", "2", "李娜", li, "女", "1980-01-01", "13812345670", "城关镇东湖村3组14号"],
        ["rs", "2", "李娜", "", "女", "1980-01-01", "13812345670", "城关镇东湖村3组14号"],
        ["mz", "3", "王芳", "", "女", "1990-05-06", "", "石店镇西岗村1组3号"],
    ]
    frame = pd.DataFrame(rows, columns=HEADER)
    frame.to_csv(tmp_path / "in.csv", index=False)
    linked = _hub("link", str(tmp_path / "in.csv"), "--out", str(tmp_path / "xw.csv"))
    assert linked.returncode == 0, linked.stderr
    xw = pd.read_csv(tmp_path / "xw.csv", dtype={"source_record_id": str}, encoding="utf-8-sig")
    xw["record_key"] = xw["source"] + "/" + xw["source_record_id"]
    probabilistic = xw[xw["reason"] == "probabilistic"]
    assert len(probabilistic) >= 2

    # the same records through the same matcher: its links and term-frequency snapshot
    outcome = Matcher.from_model().match_all(standardize_frame(frame))
    feats = outcome.features.set_index("record_key", drop=False)
    master = dict(zip(xw["record_key"], xw["master_id"]))
    links = outcome.links[(outcome.links["match_probability"] >= THRESHOLD)
                          & (outcome.links["record_key_l"].map(master) == outcome.links["record_key_r"].map(master))]
    checked = 0
    for key, p in zip(probabilistic["record_key"], probabilistic["match_probability"]):
        mine = links[(links["record_key_l"] == key) | (links["record_key_r"] == key)]
        if mine.empty:
            continue
        strongest = mine.loc[mine["match_probability"].idxmax()]
        pair = score_pair(feats.loc[[strongest["record_key_l"], strongest["record_key_r"]]],
                          frequencies=outcome.frequencies)
        explained = pair.explain().to_dict()
        _well_formed(explained)
        assert explained["match_probability"] == pytest.approx(float(p), rel=1e-9, abs=1e-12), key
        checked += 1
    assert checked >= 2
