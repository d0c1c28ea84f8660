"""The tests' published county of day 0 (tests.helpers.publish_day0): the pipeline runs once per session and a
later call restores exactly what it left — every row and sequence of the warehouse, the drop files moved aside
as the ingest moved them — and runs the pipeline again whenever a restore would not give the same state."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import sqlalchemy as sa

from hub import pipeline
from tests import helpers
from tests.helpers import empty_warehouse, match_day0, publish_day0


def test_a_second_call_restores_what_the_pipeline_left(engine, _served_platforms, county):
    platforms = _served_platforms
    first = publish_day0(engine, platforms, county)
    snapshot = helpers._SNAPSHOTS["published"]
    assert snapshot is not None and first == snapshot.result and first["release_no"] == 1
    # something else in the warehouse and tonight's drop files again, as another module leaves them
    empty_warehouse(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES ('mz_dibao')"))
    platforms.advance(county)

    second = publish_day0(engine, platforms, county)
    assert helpers._SNAPSHOTS["published"] is snapshot, "the pipeline ran again instead of the restore"
    assert second == first and second is not first
    # every row and sequence value as the pipeline left them (the digest was taken right after it ran)
    assert helpers._warehouse_digest(engine) == snapshot.digest
    with engine.connect() as conn:
        counts = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM raw.record), (SELECT count(*) FROM mpi.crosswalk),"
            " (SELECT count(*) FROM publish.master_person), (SELECT release_no FROM publish.current_release),"
            " (SELECT count(*) FROM raw.load_batch)")).one()
        next_master = conn.execute(sa.text("SELECT nextval('mpi.master_id_seq')")).scalar_one()
        masters = conn.execute(sa.text("SELECT count(*) FROM mpi.master")).scalar_one()
    served = sum(len(county.served(name)) for name in pipeline.source_names())
    assert counts[0] == counts[1] == served and counts[2] > 0 and counts[3] == 1
    assert next_master == masters + 1  # the master-id sequence goes on after the restored masters
    # the drop files: taken as the ingest takes them (into processed/, owner-only), none left waiting
    assert snapshot.moved and helpers._drop_files(platforms, waiting=True) == {}
    for name, (place, mode) in snapshot.moved.items():
        moved = platforms.drops / place
        assert moved.parent.name == "processed" and moved.name == Path(name).name and mode == 0o600
        assert moved.stat().st_mode & 0o777 == 0o600 and not (platforms.drops / name).exists()
    platforms.advance(county)  # tonight's drop files again for the modules after this one


def test_the_matched_county_is_restored_without_a_gate_run_or_a_release(engine, _served_platforms, county):
    first = match_day0(engine, _served_platforms, county)
    snapshot = helpers._SNAPSHOTS["matched"]
    assert first["mode"] == "full" and first["masters"] > 0
    publish_day0(engine, _served_platforms, county)  # another stage in between
    second = match_day0(engine, _served_platforms, county)
    assert helpers._SNAPSHOTS["matched"] is snapshot and second == first
    assert helpers._warehouse_digest(engine) == snapshot.digest
    with engine.connect() as conn:
        gates, releases, masters = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM audit.validation_run), (SELECT count(*) FROM publish.release),"
            " (SELECT count(*) FROM mpi.master)")).one()
    assert (gates, releases, masters) == (0, 0, first["masters"])
    _served_platforms.advance(county)


def test_a_restore_is_refused_when_it_would_not_give_the_same_state(engine, _served_platforms, county, monkeypatch):
    platforms = _served_platforms
    publish_day0(engine, platforms, county)
    snapshot = helpers._SNAPSHOTS["published"]
    empty_warehouse(engine)
    platforms.advance(county)
    assert snapshot.unusable(engine, platforms, county) is None

    assert snapshot.unusable(engine, platforms, copy.copy(county)) == "another county or platforms"
    monkeypatch.setenv("HUB_SNAPSHOT_PROBE", "0.5")
    assert snapshot.unusable(engine, platforms, county) == "the HUB_*/AIRFLOW* environment changed"
    monkeypatch.undo()
    # a drop file of another night still waiting: the ingest would take it too
    waiting = next(platforms.drops / name for name in snapshot.inbox)
    extra = waiting.with_name("LATE_20261119.csv")
    extra.write_bytes(waiting.read_bytes())
    try:
        assert snapshot.unusable(engine, platforms, county) == "other drop files are waiting"
    finally:
        extra.unlink()
    # the gate's Data Docs deleted: the release would name an index that is not there
    docs = Path(snapshot.result["gate"]["docs"])
    kept = docs.read_bytes()
    docs.unlink()
    try:
        assert snapshot.unusable(engine, platforms, county) == "the gate's Great Expectations files are gone"
    finally:
        docs.write_bytes(kept)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit.export_log ADD COLUMN snapshot_probe integer"))
    try:
        assert snapshot.unusable(engine, platforms, county) == "the warehouse's tables changed"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit.export_log DROP COLUMN snapshot_probe"))
    assert snapshot.unusable(engine, platforms, county) is None
    assert os.environ.get("HUB_SNAPSHOT_PROBE") is None
