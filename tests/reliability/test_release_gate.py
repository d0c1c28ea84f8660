"""Every published fact is in the release; the gate holds mass deletions and passes small counties.

One 2,000-person simulated county (CountySpec(persons=2000, seed=22)) is ingested, matched and published
as release 1 once for the module; the tests then move it on in order, each through the real pipeline
(ingest from the loopback platforms, standardize, match, gate, publish):

1. a 低保 record goes 在保 → 停保: a new release, whose enrolment and 低保 ledger say 停保;
2. a 残疾人 record's 残疾等级 changes: the ledger of the earlier release reads as before, cell for cell;
3. a normal ten-day delta (births without ID numbers, a few deletions): published;
4. one load deletes 147 医保 records: held, the reason naming source, count, share and limit.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from connectors.registry import load_registry
from hub import pipeline
from hub.errors import GateFailed
from reports.ledgers import generate_ledger
from simulators.county import DeltaSpec, SimulatedCounty
from simulators.population import CountySpec
from tests.helpers import empty_warehouse, publish_served_county
from warehouse.releases import show_release

AS_OF = dt.date(2026, 12, 1)
QUIET = DeltaSpec(births=0, deaths=0, moves=0, corrections=0, deletions=0)  # a day on which nothing happens


@pytest.fixture(scope="module")
def hub(engine, _served_platforms, county):
    """The small county on day 0, published as release 1; ``state["county"]`` is the county as served now."""
    empty_warehouse(engine)
    _served_platforms.set_faults(None)
    small = SimulatedCounty.create(CountySpec(persons=2000, seed=22))
    _served_platforms.advance(small)
    first = publish_served_county()
    assert first["release_no"] == 1
    yield {"engine": engine, "platforms": _served_platforms, "county": small}
    for left in _served_platforms.drops.glob("*/*.*"):  # the small county's files no load took
        left.unlink()
    _served_platforms.advance(county)  # the session's county again, for the modules after this one
    empty_warehouse(engine)


def _serve(hub, county: SimulatedCounty) -> None:
    hub["county"] = county
    hub["platforms"].advance(county)


def _run() -> dict:
    """Ingest every source, standardize, match, gate and publish (GateFailed when the gate holds)."""
    for name in pipeline.source_names():
        pipeline.ingest_source(name)
    pipeline.standardize_sources()
    pipeline.build_master_index()
    gate = pipeline.run_gate()
    return pipeline.publish_release(gate["validation_run_id"])


def _one(conn, sql: str, **params):
    return conn.execute(sa.text(sql), params).one()


def _community(address: str) -> str:
    """The ledger community of a golden address: down to the village (before the first digit)."""
    return re.sub(r"[0-9].*$", "", address)


def _ledger_cells(conn, kind: str, community: str, release_no: int, tmp_path) -> list[tuple]:
    """The ledger's cell values, every sheet, without the line saying when the file was made."""
    out = tmp_path / f"{kind}_{release_no}_{len(list(tmp_path.iterdir()))}.xlsx"
    generate_ledger(conn, kind, community, out, sources=load_registry(), release_no=release_no, as_of=AS_OF)
    book = load_workbook(out)
    return [(sheet.title, *row) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)
            if not any(isinstance(v, str) and "生成时间" in v for v in row)]


def _enrolment(conn, release_no: int, source: str, record_id: str):
    return conn.execute(sa.text(
        "SELECT master_id, status_raw FROM publish.enrolment"
        " WHERE release_no = :n AND source = :s AND source_record_id = :r"),
        {"n": release_no, "s": source, "r": record_id}).one()


@pytest.fixture(scope="module")
def changed(hub, tmp_path_factory):
    """One day later: a 低保 record went 在保 → 停保 and a 残疾人 record's 残疾等级 changed, both loaded
    through the pipeline; with the ledgers of the release before, written before the load."""
    folder = tmp_path_factory.mktemp("ledgers")
    day = hub["county"].next_day(QUIET)
    dibao, canji = day.rolls["mz_dibao"], day.rolls["mz_canji"]
    on = dibao.index[(dibao["status"] == "在保") & ~dibao["_deleted"]][0]
    dibao_id = str(dibao.at[on, "record_id"])
    with hub["engine"].connect() as conn:
        before = _one(conn, "SELECT release_no FROM publish.current_release").release_no
        person = _enrolment(conn, before, "mz_dibao", dibao_id)
        dibao_place = _community(_one(conn, "SELECT address FROM publish.master_person"
                                            " WHERE release_no = :n AND master_id = :m", n=before, m=person.master_id).address)
        # a 残疾人 record of a living person with one such record and a golden address
        disabled = _one(conn, "SELECT e.source_record_id, p.address"
                              " FROM publish.enrolment e JOIN publish.master_person p USING (release_no, master_id)"
                              " WHERE e.release_no = :n AND e.source = 'mz_canji' AND p.address IS NOT NULL"
                              "   AND p.status IS DISTINCT FROM 'deceased' AND NOT EXISTS (SELECT 1"
                              "     FROM publish.enrolment o WHERE o.release_no = e.release_no"
                              "       AND o.master_id = e.master_id AND o.source = e.source"
                              "       AND o.source_record_id <> e.source_record_id)"
                              " ORDER BY e.source_record_id LIMIT 1", n=before)
        canji_place = _community(disabled.address)
        ledgers_before = {"dibao": _ledger_cells(conn, "dibao", dibao_place, before, folder),
                          "canji": _ledger_cells(conn, "canji", canji_place, before, folder)}
    at = canji.index[canji["record_id"].astype(str) == disabled.source_record_id][0]
    level = canji.at[at, "level"]
    new_level = next(other for other in ("一级", "二级", "三级", "四级") if other != level)
    dibao.loc[on, ["status", "_updated"]] = ["停保", day.as_of]
    canji.loc[at, ["level", "_updated"]] = [new_level, day.as_of]
    _serve(hub, day)
    release = _run()
    return {"before": before, "release": release, "folder": folder, "ledgers_before": ledgers_before,
            "dibao": (dibao_id, person, dibao_place), "canji": (disabled.source_record_id, level, new_level, canji_place)}


def test_a_status_change_at_a_source_publishes_a_new_release(hub, changed):
    before, release, folder = changed["before"], changed["release"], changed["folder"]
    record_id, person, place = changed["dibao"]
    assert person.status_raw == "在保"
    assert release["outcome"] == "published", release  # before: 'unchanged' (the hash covered golden records only)
    after = release["release_no"]
    assert after == before + 1
    with hub["engine"].connect() as conn:
        assert _enrolment(conn, after, "mz_dibao", record_id).status_raw == "停保"
        assert _enrolment(conn, before, "mz_dibao", record_id).status_raw == "在保"
        current = _one(conn, "SELECT status_raw FROM publish.enrolment_current"
                             " WHERE source = 'mz_dibao' AND source_record_id = :r", r=record_id)
        assert current.status_raw == "停保"
        new_ledger = _ledger_cells(conn, "dibao", place, after, folder)
        changes = show_release(conn, after)
    assert any(person.master_id in row for row in changed["ledgers_before"]["dibao"])  # 在保 in the earlier ledger
    assert not any(person.master_id in row for row in new_ledger)  # 停保: no longer on the 低保 ledger
    assert changes["enrolment_changes"]["changed"] == 2  # the 低保 status and the 残疾等级
    assert changes["changes"] == {"added": 0, "removed": 0, "changed": 0}  # no golden record changed


def test_a_ledger_of_an_earlier_release_reads_that_release_only(hub, changed):
    before, release, folder = changed["before"], changed["release"], changed["folder"]
    record_id, level, new_level, place = changed["canji"]
    earlier = changed["ledgers_before"]["canji"]
    assert any(record_id in row and level in row for row in earlier)
    with hub["engine"].connect() as conn:
        again = _ledger_cells(conn, "canji", place, before, folder)
    assert again == earlier  # before: the earlier release's ledger showed the new 残疾等级
    assert release["outcome"] == "published", release
    with hub["engine"].connect() as conn:
        now = _ledger_cells(conn, "canji", place, release["release_no"], folder)
    assert any(record_id in row and new_level in row for row in now)


def test_a_normal_ten_day_delta_on_a_small_county_publishes(hub):
    day = hub["county"]
    for _ in range(10):
        day = day.next_day()
    assert sum(day.changes.values()) > 0
    _serve(hub, day)

    release = _run()  # before: GateFailed, source.wj_chusheng expect_id_numbers_to_be_mostly_valid (13 of 45 valid)

    assert release["outcome"] == "published", release
    with hub["engine"].connect() as conn:
        births = _one(conn, "SELECT count(*) AS n, count(*) FILTER (WHERE id_number_status IN ('valid',"
                            " 'upgraded_from_15')) AS valid FROM std.resident WHERE source = 'wj_chusheng'")
        checks = conn.execute(sa.text(
            "SELECT suite, observed FROM audit.validation_result WHERE run_id = (SELECT max(run_id)"
            " FROM audit.validation_run) AND expectation = 'expect_deletions_to_be_within_share'")).all()
    assert births.valid / births.n < 0.30  # below the declared minimum, as a handful of newborns make it
    deleted = {suite: int(observed.split(" of ")[0].replace(",", "")) for suite, observed in checks}
    assert len(deleted) == len(pipeline.source_names()) and 0 < sum(deleted.values()) < 40, deleted


def test_a_load_deleting_147_records_is_held_with_the_reason(hub):
    day = hub["county"].next_day(QUIET)
    roll = day.rolls["rs_yiliao"]
    live = roll.index[~roll["_deleted"]]
    gone = live[:: max(1, len(live) // 147)][:147]
    roll.loc[gone, ["_deleted", "_updated"]] = [True, day.as_of]
    with hub["engine"].connect() as conn:
        current = _one(conn, "SELECT release_no, master_count FROM publish.release r"
                             " JOIN publish.current_release USING (release_no)")
    _serve(hub, day)
    landed = pipeline.ingest_source("rs_yiliao")  # the only source with news today
    assert landed["tombstones"] == 147
    pipeline.standardize_sources(["rs_yiliao"])
    pipeline.build_master_index()

    with pytest.raises(GateFailed) as held:
        pipeline.run_gate()

    reason = str(held.value)
    had = len(live)
    assert f"source.rs_yiliao: raw.tombstone[rs_yiliao].* expect_deletions_to_be_within_share: 147 of {had:,}" \
           " records deleted since the last gate run that passed" in reason, reason
    assert f"({147 / had:.1%}); limit 2% ({had * 2 // 100:,} records)" in reason, reason
    assert "one earlier load deleted at most" in reason
    with hub["engine"].connect() as conn:
        attempt = _one(conn, "SELECT outcome, release_no, reason FROM audit.publish_attempt"
                             " ORDER BY attempt_id DESC LIMIT 1")
        now = _one(conn, "SELECT release_no FROM publish.current_release")
        served = _one(conn, "SELECT count(*) AS n FROM publish.master_person_current").n
    assert attempt.outcome == "blocked" and attempt.release_no == current.release_no
    assert "rs_yiliao" in attempt.reason and "147 of" in attempt.reason and "limit 2%" in attempt.reason
    assert now.release_no == current.release_no and served == current.master_count
    listed = subprocess.run([str(Path(sys.executable).with_name("hub")), "release", "list"], capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "blocked — gate failed: source.rs_yiliao: raw.tombstone[rs_yiliao].* expect_deletions_to_be_within_share:" \
           f" 147 of {had:,} records deleted" in listed.stdout, listed.stdout
