"""The whole gate (source suites and master-index suites) on data the real pipeline produced.

The module runs the simulated county (the session's ``county``) through ingest, standardize and
``build_master_index`` into the session's warehouse database once, validates it with
:func:`expectations.gate.run_gate_suites` (everything passes), then breaks it on purpose and
validates again into the same ``gx_dir``: a third of one source's ID numbers blanked, row and
master counts outside their tolerances, a record missing from the crosswalk, a master holding
two valid ID numbers, a golden birth date contradicting its ID number. The warehouse is emptied
again at module teardown.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from expectations.gate import load_gate_rules, run_gate_suites
from expectations.sources import (
    DEFAULT_RULES_PATH,
    GateRulesError,
    count_bounds,
    deletion_outcome,
    parse_gate_rules,
    source_query,
    tolerated_share,
)
from tests.helpers import empty_warehouse

BLANKED_SOURCE = "mz_dibao"  # a third of its ID numbers blanked in the failing run
SHRUNK_SOURCE = "rs_yanglao"  # previous count 15% above today's: outside the 10% tolerance
GROWN_SOURCE = "rs_yiliao"  # previous count 5% below today's: inside
UNCOUNTED_SOURCE = "wj_chusheng"  # no previous count: no row-count check

EXPECTED_FAILURES = {
    (f"std.resident[{BLANKED_SOURCE}]", "expect_id_numbers_to_be_mostly_valid", "id_number_status"),
    (f"std.resident[{BLANKED_SOURCE}]", "expect_column_values_to_not_be_null", "id_number_raw"),
    (f"std.resident[{SHRUNK_SOURCE}]", "expect_table_row_count_to_be_between", None),
    ("mpi.crosswalk", "expect_std_records_to_be_in_crosswalk", None),
    ("mpi.crosswalk", "expect_masters_to_hold_one_valid_id_number", None),
    ("mpi.golden", "expect_birth_date_and_sex_to_agree_with_cn_ric", "id_number,birth_date,sex"),
    ("mpi.golden", "expect_table_row_count_to_be_between", None),
}


@dataclass
class Warehouse:
    sources: list[str]
    rows: dict[str, int]  # std rows per source
    masters: int
    needles: tuple[set[str], set[str]]  # every ID number and name the warehouse holds


@pytest.fixture(scope="module")
def warehouse(engine, county, tmp_path_factory):
    """The simulated county through the real pipeline, in the session's warehouse database."""
    from hub import pipeline
    from hub.simulation import connection_env
    from simulators.platforms import start_platforms

    empty_warehouse(engine)
    running = start_platforms(county, tmp_path_factory.mktemp("sim"))
    try:
        with pytest.MonkeyPatch.context() as env:
            for key, value in connection_env(running).items():
                env.setenv(key, value)
            for name in pipeline.source_names():
                pipeline.ingest_source(name)
    finally:
        running.stop()
    pipeline.standardize_sources()
    masters = pipeline.build_master_index()["masters"]
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT source, count(*) FROM std.resident GROUP BY source")).all())
        ids = set(conn.execute(sa.text(
            "SELECT v FROM (SELECT id_number AS v FROM std.resident UNION SELECT id_number_raw FROM std.resident"
            " UNION SELECT id_number FROM mpi.golden) x WHERE length(v) >= 15")).scalars())
        names = set(conn.execute(sa.text(
            "SELECT v FROM (SELECT name AS v FROM std.resident UNION SELECT name_raw FROM std.resident"
            " UNION SELECT name FROM mpi.golden) x WHERE length(v) >= 2")).scalars())
    # needles: ID numbers of the GB 11643 shapes (not placeholders such as all zeros), names
    # without their stray spaces (the scanner reads text with whitespace removed)
    ids = {i.upper() for i in ids if re.fullmatch(r"[0-9]{15}|[0-9]{17}[0-9Xx]", i) and len(set(i[:15])) > 1}
    names = {n for n in (re.sub(r"\s+", "", n) for n in names) if len(n) >= 2}
    yield Warehouse(sorted(rows), {k: int(v) for k, v in rows.items()}, masters, (ids, names))
    empty_warehouse(engine)


@pytest.fixture(scope="module")
def gx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gx_gate")


@pytest.fixture(scope="module")
def good_run(warehouse, database_url, gx_dir):
    previous = {name: n for name, n in warehouse.rows.items() if name != UNCOUNTED_SOURCE}
    return run_gate_suites(
        database_url,
        gx_dir,
        sources=warehouse.sources,
        previous_row_counts=previous,
        previous_master_count=None,
        rules=load_gate_rules(),
    )


@pytest.fixture(scope="module")
def bad_run(good_run, warehouse, engine, database_url, gx_dir):
    with engine.begin() as conn:
        # a third of one source's ID numbers blanked: what standardizing a NULL raw value gives
        blanked = conn.execute(sa.text(
            "UPDATE std.resident SET id_number_raw = NULL, id_number = NULL, id_number_status = 'missing',"
            "       id_birth_date = NULL, id_sex = NULL, id_region = NULL"
            " WHERE source = :s AND source_record_id IN ("
            "   SELECT source_record_id FROM (SELECT source_record_id,"
            "          row_number() OVER (ORDER BY source_record_id) AS n FROM std.resident WHERE source = :s) x"
            "   WHERE n % 3 = 0)"), {"s": BLANKED_SOURCE}).rowcount
        assert blanked == warehouse.rows[BLANKED_SOURCE] // 3
        # a record of a two-record master loses its crosswalk row
        conn.execute(sa.text(
            "DELETE FROM mpi.crosswalk WHERE (source, source_record_id) = (SELECT source, source_record_id"
            " FROM mpi.crosswalk WHERE master_id = (SELECT master_id FROM mpi.golden WHERE record_count >= 2"
            " ORDER BY master_id LIMIT 1) ORDER BY source, source_record_id LIMIT 1)"))
        # one record of another multi-record master carries someone else's valid ID number
        conn.execute(sa.text(
            "UPDATE mpi.match_feature SET id_valid = (SELECT id_number FROM mpi.golden"
            "   WHERE id_number IS NOT NULL ORDER BY master_id LIMIT 1)"
            " WHERE (source, source_record_id) = (SELECT c.source, c.source_record_id FROM mpi.crosswalk c"
            "   JOIN mpi.match_feature f USING (source, source_record_id)"
            "   WHERE f.id_valid IS NOT NULL AND c.master_id = (SELECT c2.master_id FROM mpi.crosswalk c2"
            "     JOIN mpi.match_feature f2 USING (source, source_record_id) WHERE f2.id_valid IS NOT NULL"
            "     GROUP BY c2.master_id HAVING count(*) >= 2 ORDER BY c2.master_id DESC LIMIT 1)"
            "   ORDER BY c.source, c.source_record_id LIMIT 1)"))
        # a golden birth date one day off its ID number's
        conn.execute(sa.text(
            "UPDATE mpi.golden SET birth_date = birth_date + 1 WHERE master_id = (SELECT master_id"
            " FROM mpi.golden WHERE id_number IS NOT NULL AND birth_date IS NOT NULL ORDER BY master_id LIMIT 1)"))
    previous = {name: n for name, n in warehouse.rows.items() if name != UNCOUNTED_SOURCE}
    previous[SHRUNK_SOURCE] = round(warehouse.rows[SHRUNK_SOURCE] * 1.15)
    previous[GROWN_SOURCE] = round(warehouse.rows[GROWN_SOURCE] * 0.95)
    return run_gate_suites(
        database_url,
        gx_dir,
        sources=warehouse.sources,
        previous_row_counts=previous,
        previous_master_count=round(warehouse.masters * 1.06),  # 6% fewer masters than the last release
    )


def by_suite(summaries) -> dict:
    return {s.suite: s for s in summaries}


def failures(summaries) -> set[tuple]:
    return {(o.table, o.expectation, o.column) for s in summaries for o in s.outcomes if not o.success}


# --------------------------------------------------------------------------- the rules file


def test_gate_rules_file():
    from hub import pipeline

    rules = load_gate_rules()
    assert rules.path == str(DEFAULT_RULES_PATH)
    assert set(rules.overrides) <= set(pipeline.source_names())  # overrides name real sources
    default = rules.for_source("mz_dibao")
    assert default == rules.defaults
    assert default.min_id_valid_share == 0.90 and default.max_row_count_change == 0.10
    assert default.earliest_birth_date == dt.date(1900, 1, 1)
    births = rules.for_source("wj_chusheng")
    assert births.min_id_valid_share == 0.30 and births.min_name_share == default.min_name_share
    assert rules.master_index.max_cluster_size == 20
    assert rules.master_index.max_master_count_change == 0.05
    assert rules.scorecard_thresholds() == {"wj_chusheng": {"id_valid_red": 0.30}}


def test_gate_rules_errors_name_the_key():
    import yaml

    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    bad = json.loads(json.dumps(data, default=str))
    bad["defaults"]["min_id_valid_share"] = 1.5
    bad["defaults"]["earliest_birth_date"] = "1900-13-01"
    bad["defaults"]["share_confidence"] = 0.3
    bad["defaults"]["min_deletions_to_hold"] = -1
    bad["sources"]["wj_chusheng"]["min_id_valid_shares"] = 0.3
    bad["sources"]["x'; drop table std.resident; --"] = {}
    del bad["master_index"]["max_cluster_size"]
    bad["extra"] = 1
    with pytest.raises(GateRulesError) as info:
        parse_gate_rules(bad, "rules.yaml")
    message = str(info.value)
    for key in (
        "defaults.min_id_valid_share",
        "defaults.earliest_birth_date",
        "defaults.share_confidence: expected a number between 0.5 and 1",
        "defaults.min_deletions_to_hold: expected a whole number >= 0",
        "sources.wj_chusheng.min_id_valid_shares: unknown key",
        "not a source name",
        "master_index.max_cluster_size",
        "extra: unknown key",
    ):
        assert key in message, key
    with pytest.raises(GateRulesError, match="cannot read gate rules"):
        load_gate_rules(DEFAULT_RULES_PATH.with_name("no_such_rules.yaml"))


def test_count_bounds():
    assert count_bounds(100, 0.10) == (90, 110)
    assert count_bounds(169, 0.10) == (152, 186)  # widened to whole rows
    assert count_bounds(0, 0.5) == (0, 0)
    with pytest.raises(ValueError):
        count_bounds(-1, 0.1)
    with pytest.raises(ValueError):
        count_bounds(10, 1.5)


def test_shares_on_few_rows_pass_down_to_the_confidence_bound():
    # the score-test bound: minimum less z * sqrt(m (1 - m) / n), z = 2.326 at 0.99
    assert tolerated_share(0.30, 45, 0.99) == pytest.approx(0.1411, abs=1e-4)  # 13 of 45 births pass
    assert 13 / 45 >= tolerated_share(0.30, 45, 0.99)
    assert tolerated_share(0.90, 300, 0.99) == pytest.approx(0.8597, abs=1e-4)
    assert 0.66 < tolerated_share(0.90, 120, 0.99)  # a third blanked on a small source still fails
    assert tolerated_share(0.90, 1_000_000, 0.99) == pytest.approx(0.90, abs=1e-3)
    assert tolerated_share(0.90, None, 0.99) == tolerated_share(0.90, 0, 0.99) == 0.90
    assert tolerated_share(0.30, 45, 0.999) < tolerated_share(0.30, 45, 0.99)
    assert tolerated_share(1.0, 45, 0.99) == 1.0


def test_deletions_are_held_above_the_share_and_the_minimum_count():
    rules = load_gate_rules().for_source("rs_yiliao")
    assert (rules.max_deletion_share, rules.min_deletions_to_hold) == (0.02, 20)
    held = deletion_outcome("rs_yiliao", 147, 1650, rules)
    assert not held.success and held.table == "raw.tombstone[rs_yiliao]"
    assert held.observed == ("147 of 1,650 records deleted since the last gate run that passed (8.9%);"
                             " limit 2% (33 records), fewer than 20 always pass")
    assert (held.unexpected_count, held.unexpected_percent) == (147, pytest.approx(8.9091, abs=1e-4))
    assert deletion_outcome("rs_yiliao", 11, 1771, rules).success  # a normal ten days
    assert deletion_outcome("rs_yiliao", 33, 1650, rules).success  # at the limit
    assert not deletion_outcome("rs_yiliao", 34, 1650, rules).success
    assert deletion_outcome("mz_canji", 19, 90, rules).success  # a few on a small source: under the minimum count
    assert not deletion_outcome("mz_canji", 20, 90, rules).success
    assert deletion_outcome("mz_canji", 0, 0, rules).success
    assert deletion_outcome("rs_yiliao", 147, 1650, rules, most_before=4).observed.endswith(
        "; one earlier load deleted at most 4")


def test_bad_arguments_are_refused_before_gx_runs(tmp_path):
    with pytest.raises(ValueError, match="not a source name"):
        run_gate_suites("postgresql+psycopg2://nobody@/nowhere", tmp_path, sources=["mz'; --"])
    with pytest.raises(ValueError, match="previous_master_count"):
        run_gate_suites("postgresql+psycopg2://nobody@/nowhere", tmp_path, previous_master_count=-1)
    assert not any(tmp_path.iterdir())
    assert source_query("mz_dibao").endswith("FROM std.resident WHERE source = 'mz_dibao'")


# --------------------------------------------------------------------------- good data


def test_simulated_data_passes(good_run, warehouse):
    suites = by_suite(good_run)
    assert [s.suite for s in good_run] == [f"source.{n}" for n in warehouse.sources] + ["master_index"]
    assert failures(good_run) == set()
    assert all(s.success for s in good_run)
    for name in warehouse.sources:
        summary = suites[f"source.{name}"]
        assert summary.row_count == warehouse.rows[name]
        assert {o.table for o in summary.outcomes} == {f"std.resident[{name}]"}
        assert summary.evaluated == (12 if name == UNCOUNTED_SOURCE else 13)
    assert suites["master_index"].row_count == warehouse.masters
    assert suites["master_index"].evaluated == 15
    docs = {s.docs_index for s in good_run}
    assert len(docs) == 1 and docs.pop().is_file()


def test_each_source_is_validated_from_its_view_without_fetching_its_records(warehouse, database_url, tmp_path):
    """The source suites validate a view per source as a table: GX reads its columns from the catalogue, so no
    statement of the gate (GX's included) returns a source's records to the process. A gate folder whose suite
    still has the query asset of earlier versions gets the table asset. No view is left when the gate ends (a
    migration changing std.resident would find it depending on the table), a stale one included."""
    import great_expectations as gx

    from expectations.gate import DATASOURCE_NAME, URL_CONFIG_VARIABLE

    kept, other = "rs_yiliao", "mz_dibao"
    assert warehouse.rows[kept] > 500
    context = gx.get_context(mode="file", project_root_dir=str(tmp_path),
                             runtime_environment={URL_CONFIG_VARIABLE: database_url})
    context.data_sources.add_postgres(name=DATASOURCE_NAME, connection_string="${" + URL_CONFIG_VARIABLE + "}"
                                      ).add_query_asset(name=f"source.{kept}", query=source_query(kept))
    with sa.create_engine(database_url).begin() as conn:
        conn.execute(sa.text(f"CREATE OR REPLACE VIEW gate.source_{other} AS {source_query(other)}"))

    returned: list[int] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if cursor.description is not None:
            returned.append(cursor.rowcount)

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", count)
    try:
        summaries = run_gate_suites(database_url, tmp_path, sources=[kept], rules=load_gate_rules())
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", count)
    assert all(s.success for s in summaries) and summaries[0].row_count == warehouse.rows[kept]
    assert returned and max(returned) < 100, f"a statement returned {max(returned)} rows"
    with sa.create_engine(database_url).connect() as conn:
        views = conn.execute(sa.text("SELECT viewname FROM pg_views WHERE schemaname = 'gate'")).scalars().all()
        assert views == []
    asset = gx.get_context(mode="file", project_root_dir=str(tmp_path),
                           runtime_environment={URL_CONFIG_VARIABLE: database_url}).data_sources.get(
        DATASOURCE_NAME).get_asset(f"source.{kept}")
    assert asset.type == "table" and asset.table_name == f"source_{kept}"


def test_the_gate_reads_no_config_variables_file(warehouse, database_url, tmp_path):
    """The gate hands GX the database URL in memory and names no config-variables file in its project: GX read and
    parsed that file for every value it looked up (some 460 times a run). After the first run the file is not read
    at all: the second run passes with it no longer YAML."""
    small = min(warehouse.sources, key=lambda name: warehouse.rows[name])
    first = run_gate_suites(database_url, tmp_path, sources=[small], rules=load_gate_rules())
    assert all(s.success for s in first)
    project = (tmp_path / "gx" / "great_expectations.yml").read_text(encoding="utf-8")
    assert re.search(r"^config_variables_file_path:\s*(null)?\s*$", project, re.M), project[:400]
    variables = tmp_path / "gx" / "uncommitted" / "config_variables.yml"
    variables.write_text("{ this is: [not yaml\n", encoding="utf-8")
    again = run_gate_suites(database_url, tmp_path, sources=[small], rules=load_gate_rules())
    assert all(s.success for s in again) and again[0].row_count == warehouse.rows[small]


def test_row_count_checks_skipped_without_previous_counts(good_run):
    suites = by_suite(good_run)
    counted = {
        s.suite for s in good_run for o in s.outcomes
        if o.expectation == "expect_table_row_count_to_be_between" and o.table != "mpi.crosswalk"
    }
    assert f"source.{UNCOUNTED_SOURCE}" not in counted and "master_index" not in counted
    assert counted == {s for s in suites if s.startswith("source.")} - {f"source.{UNCOUNTED_SOURCE}"}


def test_thresholds_leave_margin_on_simulated_data(good_run):
    """The declared minimum shares sit well below what the simulated county measures."""
    rules = load_gate_rules()
    for summary in good_run[:-1]:
        source = summary.suite.removeprefix("source.")
        for o in summary.outcomes:
            if o.expectation == "expect_id_numbers_to_be_mostly_valid":
                share = 1 - o.unexpected_percent / 100
                assert share - rules.for_source(source).min_id_valid_share >= 0.05, (source, share)
            if o.expectation == "expect_column_values_to_not_be_null":
                share = 1 - o.unexpected_percent / 100
                assert share - getattr(rules.for_source(source), {
                    "name": "min_name_share", "id_number_raw": "min_id_number_raw_share",
                    "sex": "min_sex_share", "birth_date": "min_birth_date_share"}[o.column]) >= 0.02, (source, o)


# --------------------------------------------------------------------------- broken data


def test_broken_data_fails_exactly_where_broken(bad_run, warehouse):
    assert failures(bad_run) == EXPECTED_FAILURES
    suites = by_suite(bad_run)
    failing = {s.suite for s in bad_run if not s.success}
    assert failing == {f"source.{BLANKED_SOURCE}", f"source.{SHRUNK_SOURCE}", "master_index"}
    for summary in bad_run:
        assert summary.failed == sum(1 for o in summary.outcomes if not o.success)
        assert summary.successful + summary.failed == summary.evaluated

    blanked = {o.expectation: o for o in suites[f"source.{BLANKED_SOURCE}"].outcomes}
    validity = blanked["expect_id_numbers_to_be_mostly_valid"]
    share = 1 - validity.unexpected_percent / 100
    assert 0.6 < share < 0.7  # a third blanked on top of the source's own few bad numbers
    n = warehouse.rows[BLANKED_SOURCE]
    assert validity.observed.endswith(f"of {n} non-null values unexpected ({validity.unexpected_percent:.2f}%)")

    grown = [o for o in suites[f"source.{GROWN_SOURCE}"].outcomes
             if o.expectation == "expect_table_row_count_to_be_between"]
    assert [o.success for o in grown] == [True]  # 5% more rows than last time: within 10%
    shrunk = [o for o in suites[f"source.{SHRUNK_SOURCE}"].outcomes
              if o.expectation == "expect_table_row_count_to_be_between"]
    assert [(o.success, o.observed) for o in shrunk] == [(False, f"{warehouse.rows[SHRUNK_SOURCE]} rows")]

    master = {(o.table, o.expectation): o for o in suites["master_index"].outcomes}
    assert master[("mpi.golden", "expect_table_row_count_to_be_between")].observed == f"{warehouse.masters} rows"
    for key in (
        ("mpi.crosswalk", "expect_std_records_to_be_in_crosswalk"),
        ("mpi.crosswalk", "expect_masters_to_hold_one_valid_id_number"),
        ("mpi.golden", "expect_birth_date_and_sex_to_agree_with_cn_ric"),
    ):
        assert master[key].unexpected_count == 1, key
    assert suites["master_index"].evaluated == 16


def test_no_personal_data_under_gx_dir(good_run, bad_run, warehouse, gx_dir, database_url):
    ids, names = warehouse.needles
    assert len(ids) > 1000 and len(names) > 1000
    files = [p for p in gx_dir.rglob("*") if p.is_file()]
    assert len(files) > 40  # suites, results of both runs, Data Docs pages
    url = make_url(database_url)
    for path in files:
        data = path.read_bytes()
        assert not _personal_data(data, ids, names), path
        assert database_url.encode() not in data and url.database.encode() not in data, path
    text = repr(good_run) + repr(bad_run)
    assert not _personal_data(text.encode(), ids, names)


def test_pii_scanner_finds_planted_values(warehouse):
    ids, names = warehouse.needles
    an_id = sorted(i for i in ids if len(i) == 18)[0]
    a_name = sorted(names)[0]
    for planted in (
        json.dumps({"v": a_name}),
        html.escape(a_name).encode("ascii", "xmlcharrefreplace").decode(),
        "".join(f"&#x{ord(c):x};" for c in a_name),
        f"<td>{an_id[:17]}</td>",
        json.dumps({"v": an_id}),
    ):
        assert _personal_data(planted.encode(), ids, names), planted
    assert not _personal_data(b"20261121T195154.734496Z 2934 rows", ids, names)


# --------------------------------------------------------------------------- helpers

_ESCAPED = re.compile(r"\\u([0-9a-fA-F]{4})")
_DIGITS = re.compile(r"[0-9]{15,}[0-9Xx]?")
_HAN = re.compile("[\u00b7\u2022\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")


def _personal_data(data: bytes, ids: set[str], names: set[str]) -> bool:
    """Does ``data`` hold any of the ID numbers (or their 17-digit bodies) or names,
    raw, JSON-escaped or as HTML character references?"""
    text = data.decode("utf-8", errors="replace")
    text = html.unescape(_ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text))
    bodies = {i[:17] for i in ids if len(i) == 18}
    for run in _DIGITS.findall(text):
        for width in (15, 17, 18):
            for start in range(len(run) - width + 1):
                piece = run[start:start + width]
                if piece in ids or piece in bodies or piece.upper() in ids:
                    return True
    longest = max(map(len, names), default=0)
    for run in _HAN.findall(re.sub(r"\s+", "", text)):
        for start in range(len(run)):
            for end in range(start + 2, min(len(run), start + longest) + 1):
                if run[start:end] in names:
                    return True
    return False
