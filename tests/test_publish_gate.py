"""The publish gate end to end: a connector fault blanks a third of a source's ID numbers."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub import pipeline
from hub.errors import GateFailed
from simulators.rest_server import FaultPlan
from tests.helpers import publish_day0


def test_a_source_with_a_third_of_its_id_numbers_blank_is_blocked(clean_warehouse, platforms, county):
    first = publish_day0(clean_warehouse, platforms, county)
    gate = first["gate"]
    assert first["outcome"] == "published" and gate["failed"] == 0 and gate["suites"] >= 2
    with clean_warehouse.connect() as conn:
        served_before = conn.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one()
        suites = conn.execute(sa.text(
            "SELECT suite, row_count FROM audit.validation_suite WHERE run_id = :r ORDER BY suite"),
            {"r": gate["validation_run_id"]}).all()
    assert {"master_index", "source.mz_dibao"} <= {s.suite for s in suites}
    assert all(s.row_count for s in suites)

    # the civil-affairs export job breaks: a third of the ID numbers come back empty on a full re-pull
    platforms.set_faults(FaultPlan(blank_ids=1 / 3, seed=5))
    landed = pipeline.ingest_source("mz_dibao", full=True)
    assert landed["landed"] > 0
    pipeline.standardize_sources()
    with clean_warehouse.connect() as conn:
        missing = conn.execute(sa.text(
            "SELECT avg((id_number_status = 'missing')::int) FROM std.resident WHERE source = 'mz_dibao'")).scalar_one()
    assert 0.28 < missing < 0.45
    pipeline.build_master_index()
    with pytest.raises(GateFailed) as failed:
        pipeline.run_gate()
    message = str(failed.value)
    assert "source.mz_dibao" in message and "id_number_status" in message and "current release stays" in message

    with clean_warehouse.connect() as conn:
        current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar_one()
        served = conn.execute(sa.text("SELECT count(*) FROM publish.master_person_current")).scalar_one()
        attempt = conn.execute(sa.text(
            "SELECT outcome, release_no, reason, validation_run_id FROM audit.publish_attempt"
            " ORDER BY attempt_id DESC LIMIT 1")).one()
        failing = conn.execute(sa.text(
            "SELECT suite, expectation, column_name FROM audit.validation_result"
            " WHERE run_id = :r AND NOT success"), {"r": attempt.validation_run_id}).all()
        releases = conn.execute(sa.text("SELECT count(*) FROM publish.release")).scalar_one()
    assert current == first["release_no"] and served == served_before and releases == 1
    assert attempt.outcome == "blocked" and attempt.release_no == first["release_no"]
    assert "source.mz_dibao" in attempt.reason
    assert ("source.mz_dibao", "expect_id_numbers_to_be_mostly_valid", "id_number_status") in {tuple(f) for f in failing}
    known = set(county.population["id_number"].dropna())
    assert not any(n in attempt.reason for n in known)
