"""The slice end to end through the pipeline functions, checked against the simulator's truth."""

import pandas as pd
import sqlalchemy as sa

from hub import pipeline


def _run_all():
    ingested = {name: pipeline.ingest_source(name) for name in pipeline.source_names()}
    pipeline.standardize_sources()
    matched = pipeline.build_master_index()
    gate = pipeline.run_gate()
    release = pipeline.publish_release(gate["validation_run_id"])
    return ingested, matched, gate, release


def _crosswalk(engine):
    with engine.connect() as conn:
        return pd.read_sql(sa.text("SELECT source, source_record_id, master_id FROM mpi.crosswalk"), conn)


def test_slice_against_ground_truth_and_rerun_is_idempotent(clean_warehouse, platforms, county):
    ingested, matched, gate, release = _run_all()
    served = {name: len(county.served(name)) for name in pipeline.source_names()}
    assert {k: v["landed"] for k, v in ingested.items()} == served
    assert gate["failed"] == 0 and release["outcome"] == "published" and release["release_no"] == 1

    xw = _crosswalk(clean_warehouse)
    assert len(xw) == sum(served.values())  # every record has a master id
    truth = county.truth()[["source", "source_record_id", "person_id"]]
    joined = xw.merge(truth, on=["source", "source_record_id"], validate="one_to_one")
    persons_per_master = joined.groupby("master_id")["person_id"].nunique()
    assert persons_per_master.max() == 1, "a master id holds two different persons"
    # records carrying their person's own ID number, with the name that goes with it, share one master id
    with clean_warehouse.connect() as conn:
        usable = pd.read_sql(sa.text(
            "SELECT r.source, r.source_record_id, r.id_number FROM std.resident r"
            " JOIN mpi.crosswalk c USING (source, source_record_id)"
            " WHERE r.id_number_status IN ('valid', 'upgraded_from_15') AND c.match_rule <> 'split_constraint'"), conn)
    linked = joined.merge(usable, on=["source", "source_record_id"])
    linked = linked[linked["id_number"] == linked["person_id"].map(county.population.set_index("person_id")["id_number"])]
    assert linked.groupby("person_id")["master_id"].nunique().max() == 1
    assert matched["linked_exact_id"] > 0 and matched["linked_probabilistic"] > 0

    with clean_warehouse.connect() as conn:
        current = conn.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one()
        enrolments = pd.read_sql(sa.text("SELECT source, department, master_id FROM publish.enrolment_current"), conn)
    assert current == matched["masters"]
    # every record is published as an enrolment of its department under its master id
    assert len(enrolments) == len(xw) and set(enrolments["master_id"]) == set(xw["master_id"])
    assert set(enrolments["department"]) == {"civil_affairs", "health", "social_security"}
    assert (enrolments[enrolments["source"] == "mz_dibao"]["department"] == "civil_affairs").all()

    # a second run: nothing new lands, ids stay, and the release stays the same
    ingested2, matched2, gate2, release2 = _run_all()
    assert all(v["landed"] == 0 and v["duplicates"] == v["received"] for v in ingested2.values())
    assert matched2["masters_created"] == 0 and matched2["crosswalk_changed"] == 0
    assert release2 == {"outcome": "unchanged", "release_no": 1, "reason": "content equals release 1; it stays current"}
    pd.testing.assert_frame_equal(_crosswalk(clean_warehouse).sort_values(["source", "source_record_id"]).reset_index(drop=True),
                                  xw.sort_values(["source", "source_record_id"]).reset_index(drop=True))
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw.record")).scalar_one() == sum(served.values())
        assert conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one() == 1


def _std(engine):
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text("SELECT * FROM std.resident"), conn)
    return frame.drop(columns=["standardized_at"]).sort_values(["source", "source_record_id"]).reset_index(drop=True)


def test_std_follows_raw_incrementally_and_equals_a_full_rebuild(clean_warehouse, county, tmp_path, monkeypatch):
    from hub.simulation import connection_env
    from simulators.platforms import start_platforms

    running = start_platforms(county, tmp_path / "sim")
    for key, value in connection_env(running).items():
        monkeypatch.setenv(key, value)
    try:
        for name in pipeline.source_names():
            pipeline.ingest_source(name)
        first = pipeline.standardize_sources()
        assert sum(r["standardized"] for r in first.values()) == sum(
            len(county.served(n, include_deleted=False)) for n in pipeline.source_names())
        day1 = county.next_day()
        running.advance(day1)
        landed = {name: pipeline.ingest_source(name) for name in pipeline.source_names()}
        second = pipeline.standardize_sources()
    finally:
        running.stop()
    for name, r in second.items():
        # new versions are standardized; deleted records leave std; nothing else is touched
        assert r["standardized"] <= landed[name]["landed"], (name, r, landed[name])
        assert r["removed"] <= landed[name]["landed"] + landed[name]["tombstones"], (name, r)
    assert sum(r["standardized"] for r in second.values()) > 0
    assert sum(r["removed"] for r in second.values()) > 0
    incremental = _std(clean_warehouse)
    pipeline.standardize_sources(full=True)
    pd.testing.assert_frame_equal(incremental, _std(clean_warehouse))
    with clean_warehouse.connect() as conn:
        orphans = conn.execute(sa.text(
            "SELECT count(*) FROM std.resident s JOIN raw.current_record c USING (source, source_record_id)"
            " WHERE c.deleted OR c.record_id <> s.raw_record_id")).scalar_one()
    assert orphans == 0
