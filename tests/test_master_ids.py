"""Stable master ids across a next-day delta, incremental = full, and steward decisions that stick."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from hub import pipeline
from tests.helpers import match_day0

BIG_DELTA = dict(births=0.004, deaths=0.003, moves=0.006, corrections=0.4, deletions=0.006)


def _load_and_match(**kwargs):
    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    return pipeline.build_master_index(**kwargs)


def _snapshot(engine) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        read = lambda sql: pd.read_sql(sa.text(sql), conn)  # noqa: E731
        return {
            "crosswalk": read("SELECT source, source_record_id, master_id, match_rule FROM mpi.crosswalk"
                              " ORDER BY source, source_record_id"),
            "masters": read("SELECT master_id, status, retired_into, anchor FROM mpi.master ORDER BY master_id"),
            "golden": read("SELECT * FROM mpi.golden ORDER BY master_id"),
            "reviews": read("SELECT record_key_l, record_key_r, round(match_probability::numeric, 9) AS p, review_reason"
                            " FROM mpi.review_pair WHERE decided_at IS NULL ORDER BY 1, 2"),
            "std": read("SELECT source, source_record_id, standardized_at FROM std.resident"),
        }


def test_next_day_keeps_ids_explains_changes_and_incremental_equals_full(clean_warehouse, platforms, county):
    from simulators.county import DeltaSpec

    first = match_day0(clean_warehouse, platforms, county)
    assert first["mode"] == "full"
    before = _snapshot(clean_warehouse)

    day1 = county.next_day(DeltaSpec(**BIG_DELTA))
    platforms.advance(day1)
    second = _load_and_match()
    assert second["mode"] == "incremental"
    assert second["new"] > 0 and second["changed"] > 0 and second["removed"] > 0
    assert 0 < second["affected"] < second["records"] / 5
    after = _snapshot(clean_warehouse)

    # persons none of whose records changed keep their master id
    truth0 = county.truth()[["source", "source_record_id", "person_id"]]
    truth1 = day1.truth()[["source", "source_record_id", "person_id"]]
    stamps = before["std"].merge(after["std"], on=["source", "source_record_id"], how="outer", suffixes=("_0", "_1"))
    changed = stamps[stamps["standardized_at_0"].isna() | stamps["standardized_at_1"].isna()
                     | (stamps["standardized_at_0"] != stamps["standardized_at_1"])]
    touched = set(truth0.merge(changed, on=["source", "source_record_id"])["person_id"]) \
        | set(truth1.merge(changed, on=["source", "source_record_id"])["person_id"])
    x0 = before["crosswalk"].merge(truth0, on=["source", "source_record_id"])
    x1 = after["crosswalk"].merge(truth1, on=["source", "source_record_id"])
    steady = x0[~x0["person_id"].isin(touched)]
    pair = steady.merge(x1, on=["source", "source_record_id", "person_id"], suffixes=("_0", "_1"))
    kept = pair.groupby("person_id").apply(lambda g: (g["master_id_0"] == g["master_id_1"]).all(),
                                           include_groups=False)
    assert len(kept) > 2000
    assert kept.mean() >= 0.999, f"{(~kept).sum()} of {len(kept)} unchanged persons changed master id"

    # every change of master id is explained by an event of the second run
    moved = before["crosswalk"].merge(after["crosswalk"], on=["source", "source_record_id"], suffixes=("_0", "_1"))
    moved = moved[moved["master_id_0"] != moved["master_id_1"]]
    with clean_warehouse.connect() as conn:
        events = pd.read_sql(sa.text("SELECT * FROM mpi.master_event WHERE run_id = :r"), conn,
                             params={"r": second["run_id"]})
    record_moves = set(map(tuple, events.loc[events["event"] == "record_moved",
                                             ["master_id", "other_master_id", "source", "source_record_id"]].to_numpy()))
    merges = set(map(tuple, events.loc[events["event"] == "merged", ["master_id", "other_master_id"]].to_numpy()))
    for r in moved.itertuples(index=False):
        assert ((r.master_id_1, r.master_id_0, r.source, r.source_record_id) in record_moves
                or (r.master_id_0, r.master_id_1) in merges), f"unexplained move of {r.source}/{r.source_record_id}"
    assert set(events["cause"]) <= {"new_data", "source_correction", "source_deletion"}
    assert {"created", "record_removed"} <= set(events["event"])

    # a retired id redirects to its survivor
    retired = after["masters"][after["masters"]["status"] == "retired"]
    assert retired["retired_into"].dropna().isin(after["masters"].loc[after["masters"]["status"] == "active",
                                                                       "master_id"]).all()

    # a full rebuild on the same data gives the same index: nothing changes, no event
    full = pipeline.build_master_index(mode="full")
    assert full["mode"] == "full" and full["events"] == 0 and full["crosswalk_changed"] == 0
    rebuilt = _snapshot(clean_warehouse)
    for table in ("crosswalk", "masters", "golden", "reviews"):
        pd.testing.assert_frame_equal(rebuilt[table], after[table], obj=table)


def test_steward_decisions_survive_a_full_rebuild_with_a_retrained_model(clean_warehouse, platforms, county, tmp_path):
    from hub.stewardship import DecisionRefused, decide, list_reviews
    from mpi.model import train_model
    from warehouse.standardized import read_for_matching

    match_day0(clean_warehouse, platforms, county)
    with clean_warehouse.begin() as conn:
        open_pairs = list_reviews(conn, limit=1000)
        assert len(open_pairs) >= 6
        # pairs of different master ids each, so that no two decisions contradict each other
        chosen, used = [], set()
        for pair in open_pairs:
            masters = {pair["master_l"], pair["master_r"]}
            if len(masters) == 2 and not masters & used and len(chosen) < 6:
                chosen.append(pair)
                used |= masters
        assert len(chosen) >= 4
        wanted = {}
        for i, pair in enumerate(chosen):
            decision = "match" if i % 2 == 0 else "not_a_match"
            try:
                decide(conn, pair["review_id"], decision, reviewer="steward-1", comment="checked the paper file")
            except DecisionRefused:  # two people (two valid ID numbers, …): the steward decides they are not
                decision = "not_a_match"
                decide(conn, pair["review_id"], decision, reviewer="steward-1", comment="checked the paper file")
            wanted[(pair["record_key_l"], pair["record_key_r"])] = decision
        std = read_for_matching(conn)
    model = train_model(std, tmp_path / "retrained.json", seed=7, max_pairs=2e5)

    result = pipeline.build_master_index(mode="full", model_path=model)
    assert result["mode"] == "full"
    with clean_warehouse.connect() as conn:
        master = dict(conn.execute(sa.text(
            "SELECT source || '/' || source_record_id, master_id FROM mpi.crosswalk")).all())
        still_open = conn.execute(sa.text(
            "SELECT count(*) FROM mpi.review_pair WHERE decided_at IS NULL AND (record_key_l, record_key_r) IN"
            " (SELECT record_key_l, record_key_r FROM mpi.review_pair WHERE decided_at IS NOT NULL)")).scalar_one()
    honoured = [(master[a] == master[b]) == (d == "match") for (a, b), d in wanted.items()]
    assert all(honoured), f"{honoured.count(False)} of {len(honoured)} decisions were not honoured"
    assert still_open == 0  # a decided pair is not put back in the queue

    # an incremental run with the same model keeps them too; the repository's model again means a full run
    again = pipeline.build_master_index(model_path=model)
    assert again["mode"] == "incremental" and again["events"] == 0
    back = pipeline.build_master_index()
    assert back["mode"] == "full"
    with clean_warehouse.connect() as conn:
        master = dict(conn.execute(sa.text(
            "SELECT source || '/' || source_record_id, master_id FROM mpi.crosswalk")).all())
    assert all((master[a] == master[b]) == (d == "match") for (a, b), d in wanted.items())
