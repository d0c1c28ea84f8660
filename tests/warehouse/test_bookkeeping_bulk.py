"""A full matching run's bookkeeping in bulk: the same stored state, only the golden records that changed.

A full run loads the feature store and the links with their lookup indexes built afterwards, and assigns,
stores and explains master ids in columns. These tests run the real pipeline on the simulated county and
check that a second full run on the same data stores exactly what the first stored (features, links with
their evidence, crosswalk, masters, golden records) with the same indexes, rebuilds no golden record, and
that a change of survivorship rules, or a master missing its golden record, still gets them rebuilt.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from tests.helpers import match_day0

TABLES = {
    "features": "SELECT * FROM mpi.match_feature ORDER BY record_key",
    "edges": "SELECT record_key_l, record_key_r, match_probability, match_weight, evidence::text AS evidence"
             " FROM mpi.match_edge ORDER BY 1, 2",
    "crosswalk": "SELECT source, source_record_id, master_id, match_rule FROM mpi.crosswalk ORDER BY 1, 2",
    "masters": "SELECT master_id, status, retired_into, anchor FROM mpi.master ORDER BY master_id",
    "golden": "SELECT * FROM mpi.golden ORDER BY master_id",
    "golden_value": "SELECT * FROM mpi.golden_value ORDER BY master_id, field",
    "golden_conflict": "SELECT * FROM mpi.golden_conflict ORDER BY master_id, field, value",
}
SCHEMA = {  # what a run that loads an empty table without its indexes and foreign keys must put back
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'mpi' ORDER BY 1, 2",
    "constraints": "SELECT conrelid::regclass::text AS tab, conname, pg_get_constraintdef(oid) AS def"
                   " FROM pg_constraint WHERE connamespace = 'mpi'::regnamespace ORDER BY 1, 2",
}


def _snapshot(engine, queries=None) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        return {name: pd.read_sql(sa.text(sql), conn) for name, sql in (queries or {**TABLES, **SCHEMA}).items()}


def _full_run(engine, rules=None) -> dict:
    from connectors.registry import source_departments
    from hub.matching import run_matching
    from mpi.survivorship import load_rules
    from warehouse.golden import rebuild_golden

    rules = rules or load_rules()
    departments = source_departments()
    with engine.begin() as conn:
        return run_matching(conn, mode="full", golden=lambda c, ids: rebuild_golden(c, rules, departments, ids))


def test_a_full_run_on_the_same_data_stores_the_same_state_and_rebuilds_no_golden_record(
        clean_warehouse, platforms, county):
    schema = _snapshot(clean_warehouse, SCHEMA)
    assert {"match_feature", "match_edge", "crosswalk", "master", "master_event"} <= set(schema["indexes"]["tablename"])
    first = match_day0(clean_warehouse, platforms, county)
    assert first["mode"] == "full" and first["golden"] > 1000
    before = _snapshot(clean_warehouse)
    for name in SCHEMA:  # the first run filled empty tables: every index and foreign key is back
        pd.testing.assert_frame_equal(before[name], schema[name], obj=name)

    again = _full_run(clean_warehouse)
    assert again["mode"] == "full" and again["events"] == 0 and again["crosswalk_changed"] == 0
    assert again["golden"] == 0
    after = _snapshot(clean_warehouse)
    for name in after:
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)

    # a master that lost its golden record gets it back; nothing else is rebuilt
    victim = before["golden"]["master_id"].iloc[len(before["golden"]) // 2]
    with clean_warehouse.begin() as conn:
        for table in ("mpi.golden_conflict", "mpi.golden_value", "mpi.golden"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE master_id = :m"), {"m": victim})
    assert _full_run(clean_warehouse)["golden"] == 1
    restored = _snapshot(clean_warehouse)
    for name in ("golden", "golden_value", "golden_conflict"):
        pd.testing.assert_frame_equal(restored[name], before[name], obj=name)


def test_new_survivorship_rules_rebuild_every_golden_record(clean_warehouse, platforms, county):
    from mpi.survivorship import load_rules, parse_rules

    match_day0(clean_warehouse, platforms, county)
    with clean_warehouse.connect() as conn:
        masters = conn.execute(sa.text("SELECT count(*) FROM mpi.golden")).scalar_one()
    rules = load_rules().model_dump()
    rules["recency"]["resolution"] = "exact" if rules["recency"]["resolution"] != "exact" else "day"
    assert _full_run(clean_warehouse, parse_rules(rules))["golden"] == masters
    assert _full_run(clean_warehouse, parse_rules(rules))["golden"] == 0  # built with these now
