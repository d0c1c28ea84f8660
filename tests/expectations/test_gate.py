"""Tests for expectations.gate: the master-index suites on mpi.crosswalk / mpi.golden.

Runs on the test session's PostgreSQL server (the embedded one, or ``HUB_TEST_DATABASE_URL``).
The module creates a throwaway database there, builds small stand-ins of the tables the
master-index suites read (mpi.crosswalk, mpi.golden, mpi.match_feature and the keys of
std.resident) and drops it afterwards; tests/expectations/test_sources.py runs the whole gate
on the real warehouse schema. The embedded server is reached over a UNIX socket; for a TCP
server the socket test looks for the server's socket in ``HUB_TEST_PG_SOCKET_DIR`` (default
``/var/run/postgresql``).
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from schemas.id_number import check_character as cn_ric_check_character

SOCKET_DIR = os.environ.get("HUB_TEST_PG_SOCKET_DIR", "/var/run/postgresql")

DDL = [
    "CREATE SCHEMA mpi",
    "CREATE SCHEMA std",
    (
        "CREATE TABLE mpi.crosswalk (source text NOT NULL, source_record_id text NOT NULL,"
        " master_id text NOT NULL, match_rule text NOT NULL,"
        " PRIMARY KEY (source, source_record_id))"
    ),
    (
        "CREATE TABLE mpi.golden (master_id text PRIMARY KEY, name text, id_number text,"
        " id_number_status text NOT NULL, sex smallint, birth_date date,"
        " record_count int NOT NULL)"
    ),
    (
        "CREATE TABLE mpi.match_feature (source text NOT NULL, source_record_id text NOT NULL,"
        " id_valid text, PRIMARY KEY (source, source_record_id))"
    ),
    (
        "CREATE TABLE std.resident (source text NOT NULL, source_record_id text NOT NULL,"
        " PRIMARY KEY (source, source_record_id))"
    ),
]


def make_id(body: str) -> str:
    return body + cn_ric_check_character(body)


def corrupt_check(valid_id: str) -> str:
    """Same body, wrong (but well-formed) check character."""
    right = valid_id[17]
    return valid_id[:17] + ("0" if right != "0" else "1")


# Known values that must never show up under gx_dir.
ID_A = make_id("11010519491231002")  # 11010519491231002X, GB 11643 worked example (female)
ID_B = make_id("34052419800101001")  # 34052419800101001X (male)
ID_C = make_id("44030419900307123")  # male
ID_D = make_id("51010720011111456")  # female
ID_E = make_id("22010219850615234")  # born 1985-06-15, female
ID_F = make_id("13010219700101567")  # born 1970-01-01, male
ID_BAD_CHECKSUM = corrupt_check(make_id("32010619750512789"))
NAME_A = "欧阳测试甲"
NAME_B = "司马测试乙"
NAME_C = "Zhugekongming Testname"
NAME_D = "上官测试丁"
NAME_BAD = "慕容测试戊"
NAME_DUP = "诸葛测试己"
NAME_E = "皇甫测试庚"
NAME_F = "令狐测试辛"

GOLDEN_COLUMNS = (
    "master_id",
    "name",
    "id_number",
    "id_number_status",
    "sex",
    "birth_date",
    "record_count",
)

GOOD_GOLDEN = [
    ("M0001", NAME_A, ID_A, "valid", 2, "1949-12-31", 2),
    ("M0002", NAME_B, ID_B, "upgraded_from_15", 1, "1980-01-01", 1),
    ("M0003", NAME_C, ID_C, "valid", 1, "1990-03-07", 3),
    ("M0004", NAME_D, None, "checksum_error", 9, None, 1),
    ("M0005", None, None, "missing", None, None, 1),
    ("M0006", "某某", ID_D, "valid", 0, "2001-11-11", 1),  # sex 0 says nothing
]
# (source, source_record_id, master_id, match_rule, the record's valid ID number or None)
GOOD_RECORDS = [
    ("minzheng", "mz-001", "M0001", "exact_id", ID_A),
    ("weijian", "wj-001", "M0001", "exact_id", ID_A),
    ("minzheng", "mz-002", "M0002", "exact_id", ID_B),
    ("minzheng", "mz-003", "M0003", "probabilistic", ID_C),
    ("weijian", "wj-003", "M0003", "probabilistic", None),
    ("renshe", "rs-003", "M0003", "probabilistic", ID_C),
    ("renshe", "rs-004", "M0004", "singleton", None),
    ("weijian", "wj-005", "M0005", "singleton", None),
    ("renshe", "rs-006", "M0006", "exact_id", ID_D),
]

# Failing dataset, one fault per expectation that should fail:
BAD_GOLDEN = GOOD_GOLDEN + [
    ("M0007", NAME_BAD, ID_BAD_CHECKSUM, "valid", 1, "1975-05-12", 1),  # wrong check character
    ("M0008", NAME_DUP, ID_A, "valid", 2, "1949-12-31", 1),  # ID_A held by two masters
    ("M0009", NAME_E, ID_E, "valid", 2, "1985-06-16", 1),  # birth date != the ID's
    ("M0010", NAME_F, ID_F, "valid", 2, "1970-01-01", 1),  # sex != the ID's
]
BAD_RECORDS = [
    # wj-003 carries another valid ID number than its master's other records: M0003 holds two
    r if r[1] != "wj-003" else (*r[:4], ID_D)
    for r in GOOD_RECORDS
] + [
    ("minzheng", "mz-007", "M0007", "exact_id", None),
    ("weijian", "wj-008", "M0008", "exact_id", ID_A),
    ("minzheng", "mz-009", "M0009", "exact_id", ID_E),
    ("minzheng", "mz-010", "M0010", "exact_id", ID_F),
    ("renshe", "rs-999", "M9999", "exact_id", None),  # a master id without a golden record
]
BAD_CROSSWALK_ONLY = [("minzheng", "mz-gone", "M0001", "exact_id")]  # no std record
BAD_STD_ONLY = [("weijian", "wj-404")]  # no crosswalk row

EXPECTED_FAILURES = {
    ("mpi.golden", "expect_column_values_to_be_valid_cn_ric", "id_number"),
    ("mpi.golden", "expect_column_values_to_be_unique", "id_number"),
    ("mpi.golden", "expect_birth_date_and_sex_to_agree_with_cn_ric", "id_number,birth_date,sex"),
    ("mpi.crosswalk", "expect_crosswalk_master_ids_to_have_golden_record", None),
    ("mpi.crosswalk", "expect_std_records_to_be_in_crosswalk", None),
    ("mpi.crosswalk", "expect_crosswalk_records_to_be_in_std", None),
    ("mpi.crosswalk", "expect_masters_to_hold_one_valid_id_number", None),
}
MASTER_EXPECTATIONS = 15  # 7 on the crosswalk, 8 on golden (without the master-count check)

ALL_IDS = [ID_A, ID_B, ID_C, ID_D, ID_E, ID_F, ID_BAD_CHECKSUM]
ALL_NAMES = [NAME_A, NAME_B, NAME_C, NAME_D, NAME_BAD, NAME_DUP, NAME_E, NAME_F]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def database_url(server_admin_url):
    """A fresh database holding stand-ins of the mpi / std tables; dropped at module teardown."""
    name = f"hub_gx_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_admin_url).set(database=name)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in DDL:
                conn.execute(sa.text(stmt))
    finally:
        engine.dispose()
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def load(
    url: str,
    golden: list[tuple],
    records: list[tuple],
    *,
    crosswalk_only: list[tuple] = (),
    std_only: list[tuple] = (),
) -> None:
    """Replace the tables' contents: ``records`` are in std, the crosswalk and match_feature."""
    crosswalk = [r[:4] for r in records] + list(crosswalk_only)
    std = [r[:2] for r in records] + list(std_only)
    features = [(r[0], r[1], r[4]) for r in records]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("TRUNCATE mpi.crosswalk, mpi.golden, mpi.match_feature, std.resident")
            )
            conn.execute(
                sa.text(
                    "INSERT INTO mpi.golden VALUES (:master_id, :name, :id_number,"
                    " :id_number_status, :sex, CAST(:birth_date AS date), :record_count)"
                ),
                [dict(zip(GOLDEN_COLUMNS, row)) for row in golden],
            )
            conn.execute(
                sa.text("INSERT INTO mpi.crosswalk VALUES (:s, :r, :m, :rule)"),
                [dict(zip(("s", "r", "m", "rule"), row)) for row in crosswalk],
            )
            conn.execute(
                sa.text("INSERT INTO std.resident VALUES (:s, :r)"),
                [dict(zip(("s", "r"), row)) for row in std],
            )
            conn.execute(
                sa.text("INSERT INTO mpi.match_feature VALUES (:s, :r, :id)"),
                [dict(zip(("s", "r", "id"), row)) for row in features],
            )
    finally:
        engine.dispose()


def load_good(url: str) -> None:
    load(url, GOOD_GOLDEN, GOOD_RECORDS)


def load_bad(url: str) -> None:
    load(
        url,
        BAD_GOLDEN,
        BAD_RECORDS,
        crosswalk_only=BAD_CROSSWALK_ONLY,
        std_only=BAD_STD_ONLY,
    )


@pytest.fixture(scope="module")
def passing_runs(database_url, tmp_path_factory):
    """Good data validated twice with the same gx_dir (idempotency)."""
    from expectations.gate import validate_master_index

    gx_dir = tmp_path_factory.mktemp("gx_pass")
    load_good(database_url)
    return gx_dir, [validate_master_index(database_url, gx_dir) for _ in range(2)]


@pytest.fixture(scope="module")
def failing_run(database_url, tmp_path_factory):
    from expectations.gate import validate_master_index

    gx_dir = tmp_path_factory.mktemp("gx_fail")
    load_bad(database_url)
    return gx_dir, validate_master_index(database_url, gx_dir)


def failures(summary) -> set[tuple]:
    return {
        (o.table, o.expectation, o.column) for o in summary.outcomes if not o.success
    }


# --------------------------------------------------------------------------- tests


def test_import_is_cheap():
    code = (
        "import sys, expectations.gate\n"
        "assert 'great_expectations' not in sys.modules\n"
        "assert 'pandas' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_passing_dataset(passing_runs):
    _, summaries = passing_runs
    for summary in summaries:
        assert summary.suite == "master_index"
        assert summary.success is True
        assert summary.evaluated == len(summary.outcomes) == MASTER_EXPECTATIONS
        assert summary.successful == MASTER_EXPECTATIONS and summary.failed == 0
        assert all(o.success for o in summary.outcomes)
        assert summary.row_count == len(GOOD_GOLDEN)  # masters in mpi.golden
    kinds = {(o.table, o.expectation, o.column) for o in summaries[0].outcomes}
    assert kinds == {
        ("mpi.crosswalk", "expect_column_values_to_not_be_null", "master_id"),
        (
            "mpi.crosswalk",
            "expect_compound_columns_to_be_unique",
            "source,source_record_id",
        ),
        ("mpi.crosswalk", "expect_table_row_count_to_be_between", None),
        ("mpi.crosswalk", "expect_std_records_to_be_in_crosswalk", None),
        ("mpi.crosswalk", "expect_crosswalk_records_to_be_in_std", None),
        ("mpi.crosswalk", "expect_crosswalk_master_ids_to_have_golden_record", None),
        ("mpi.crosswalk", "expect_masters_to_hold_one_valid_id_number", None),
        ("mpi.golden", "expect_column_values_to_be_unique", "master_id"),
        ("mpi.golden", "expect_column_values_to_match_regex", "id_number"),
        ("mpi.golden", "expect_column_values_to_be_valid_cn_ric", "id_number"),
        ("mpi.golden", "expect_column_values_to_be_unique", "id_number"),
        ("mpi.golden", "expect_column_values_to_be_in_set", "id_number_status"),
        ("mpi.golden", "expect_column_values_to_be_in_set", "sex"),
        ("mpi.golden", "expect_column_values_to_be_between", "record_count"),
        ("mpi.golden", "expect_birth_date_and_sex_to_agree_with_cn_ric", "id_number,birth_date,sex"),
    }
    by_key = {(o.table, o.expectation, o.column): o for o in summaries[0].outcomes}
    row_count = by_key[("mpi.crosswalk", "expect_table_row_count_to_be_between", None)]
    assert row_count.observed == f"{len(GOOD_RECORDS)} rows"
    cross = by_key[("mpi.crosswalk", "expect_std_records_to_be_in_crosswalk", None)]
    assert cross.observed == "0 unexpected rows" and cross.unexpected_count == 0


def test_failing_dataset(failing_run):
    _, summary = failing_run
    assert summary.success is False
    assert failures(summary) == EXPECTED_FAILURES
    assert summary.failed == len(EXPECTED_FAILURES)
    assert summary.successful == summary.evaluated - len(EXPECTED_FAILURES)
    assert summary.row_count == len(BAD_GOLDEN)
    by_key = {(o.table, o.expectation, o.column): o for o in summary.outcomes}
    checksum = by_key[
        ("mpi.golden", "expect_column_values_to_be_valid_cn_ric", "id_number")
    ]
    assert checksum.unexpected_count == 1
    assert checksum.unexpected_percent == pytest.approx(100 / 8)  # 8 non-null IDs
    duplicate = by_key[("mpi.golden", "expect_column_values_to_be_unique", "id_number")]
    assert duplicate.unexpected_count == 2  # both rows holding the shared ID
    agree = by_key[
        ("mpi.golden", "expect_birth_date_and_sex_to_agree_with_cn_ric", "id_number,birth_date,sex")
    ]
    assert agree.unexpected_count == 2  # M0009's birth date, M0010's sex
    assert agree.observed.startswith("2 of ") and "rows unexpected" in agree.observed
    for expectation in (
        "expect_crosswalk_master_ids_to_have_golden_record",
        "expect_std_records_to_be_in_crosswalk",
        "expect_crosswalk_records_to_be_in_std",
        "expect_masters_to_hold_one_valid_id_number",
    ):
        outcome = by_key[("mpi.crosswalk", expectation, None)]
        assert outcome.unexpected_count == 1, expectation
        assert outcome.observed == "1 unexpected row", expectation


def test_no_personal_data_under_gx_dir(database_url, passing_runs, failing_run):
    needles = _pii_needles(ALL_IDS, ALL_NAMES)
    scanned = 0
    for gx_dir in (passing_runs[0], failing_run[0]):
        for path in sorted(p for p in gx_dir.rglob("*") if p.is_file()):
            data = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle not in data, f"{needle!r} leaked into {path}"
            # The URL (which could carry a password) stays in memory only.
            assert database_url.encode() not in data, f"database URL written to {path}"
            assert make_url(database_url).database.encode() not in data, path
    assert scanned > 20  # JSON results, suites, Data Docs pages ...
    # The summaries themselves are PII-free too.
    text = repr(failing_run[1]) + repr(passing_runs[1])
    for value in ALL_IDS + ALL_NAMES:
        assert value not in text


def test_gx_warnings_and_errors_are_withheld_while_the_gate_runs(caplog):
    """GX logs exception messages (which can quote a value); the gate withholds them."""
    import logging

    import great_expectations  # noqa: F401 - creates GX's loggers

    from expectations.gate import _gx_messages_withheld

    caplog.set_level(logging.INFO)
    gx_logger = logging.getLogger("great_expectations.validator.validation_graph")
    with _gx_messages_withheld():
        gx_logger.error("Caught exception %s while trying to resolve metrics", f'"{NAME_A}" {ID_A}')
        gx_logger.info("an info message stays")
    gx_logger.error("after the run: %s", "logged as usual")
    assert NAME_A not in caplog.text and ID_A not in caplog.text
    assert "withheld" in caplog.text and "an info message stays" in caplog.text
    assert "after the run: logged as usual" in caplog.text
    assert gx_logger.filters == []


def test_pii_scan_would_catch_escaped_leaks(tmp_path):
    """Positive control for the scanner: JSON \\u escapes and HTML entities are matched."""
    needles = _pii_needles([ID_A], [NAME_A])
    samples = [
        json.dumps({"v": NAME_A}),  # ensure_ascii -> \\uXXXX
        html.escape(NAME_A).encode("ascii", "xmlcharrefreplace").decode(),
        f"<td>{ID_A[:17]}</td>",
    ]
    for sample in samples:
        assert any(n in sample.encode() for n in needles), sample


def test_pii_scan_detects_a_real_gx_leak(database_url, tmp_path, monkeypatch):
    """Control: with GX's default SUMMARY format the same data does leak, and is caught."""
    from expectations import gate

    monkeypatch.setattr(gate, "PII_SAFE_RESULT_FORMAT", {"result_format": "SUMMARY"})
    load_bad(database_url)
    gate.validate_master_index(database_url, tmp_path / "gx")
    leaked = {
        value
        for value in (ID_A, ID_BAD_CHECKSUM)
        for path in (tmp_path / "gx").rglob("*")
        if path.is_file() and value.encode() in path.read_bytes()
    }
    assert leaked == {ID_A, ID_BAD_CHECKSUM}


def test_data_docs_index(passing_runs, failing_run):
    for gx_dir, summary in (
        (passing_runs[0], passing_runs[1][-1]),
        (failing_run[0], failing_run[1]),
    ):
        index = summary.docs_index
        assert index is not None and index.is_file()
        assert index.name == "index.html"
        assert index.resolve().is_relative_to(gx_dir.resolve())
        assert "master_index" in index.read_text(encoding="utf-8")


def test_data_docs_index_lists_the_latest_runs(database_url, tmp_path, monkeypatch):
    """The index lists the results of the latest DOCS_INDEX_RUNS gate runs; every result stays on disk."""
    import re

    from expectations import gate

    monkeypatch.setattr(gate, "DOCS_INDEX_RUNS", 2)
    load_good(database_url)
    for _ in range(3):
        summary = gate.validate_master_index(database_url, tmp_path)
    stored = sorted((tmp_path / "gx" / "uncommitted" / "validations").rglob("*.json"))
    runs = sorted({path.parent.name for path in stored})
    assert len(stored) == 6 and len(runs) == 3  # two master-index suites per run
    listed = set(re.findall(r"validations/master_index/[a-z]+/__none__/([0-9TZ.]+)/", summary.docs_index.read_text(
        encoding="utf-8")))
    assert listed == set(runs[1:])  # the two latest runs, the first one no more
    assert "validation_results_limit: 4" in (tmp_path / "gx" / "great_expectations.yml").read_text(encoding="utf-8")


def test_rerun_updates_suite_in_place(database_url, passing_runs):
    """Same gx_dir again, with a smaller cluster bound, then with a master-count check."""
    from expectations.gate import validate_master_index

    gx_dir = passing_runs[0]
    load_good(database_url)
    summary = validate_master_index(database_url, gx_dir, max_cluster_size=2)
    assert failures(summary) == {
        ("mpi.golden", "expect_column_values_to_be_between", "record_count")
    }
    assert summary.evaluated == MASTER_EXPECTATIONS
    # back to the declared bound, and a previous release of 6 masters: within tolerance
    again = validate_master_index(database_url, gx_dir, previous_master_count=len(GOOD_GOLDEN))
    assert again.success is True and again.evaluated == MASTER_EXPECTATIONS + 1
    count = [o for o in again.outcomes if o.expectation == "expect_table_row_count_to_be_between"]
    assert [(o.table, o.observed) for o in count] == [
        ("mpi.crosswalk", f"{len(GOOD_RECORDS)} rows"),
        ("mpi.golden", f"{len(GOOD_GOLDEN)} rows"),
    ]


def test_unix_socket_url(database_url, tmp_path):
    base = make_url(database_url)
    socket_dir = str(base.query.get("host", ""))
    if socket_dir.startswith("/"):  # the embedded server: already a socket URL
        socket_url = database_url
    else:
        port = base.port or 5432
        socket_dir = SOCKET_DIR
        if base.host not in (None, "127.0.0.1", "localhost", "::1"):
            pytest.skip("test server is not local, no UNIX socket to use")
        if not Path(SOCKET_DIR, f".s.PGSQL.{port}").exists():
            pytest.skip(f"no PostgreSQL socket in {SOCKET_DIR}")
        socket_url = (
            f"postgresql+psycopg2://{base.username or 'postgres'}@/{base.database}"
            f"?host={SOCKET_DIR}&port={port}"
        )
    from expectations.gate import validate_master_index

    load_bad(database_url)
    summary = validate_master_index(socket_url, tmp_path / "gx")
    assert failures(summary) == EXPECTED_FAILURES  # i.e. it connected and everything else passed
    for path in (p for p in (tmp_path / "gx").rglob("*") if p.is_file()):
        assert socket_dir.encode() not in path.read_bytes(), path


# --------------------------------------------------------------------------- helpers


def _pii_needles(ids: list[str], names: list[str]) -> list[bytes]:
    """Byte patterns for each value: raw UTF-8, JSON \\u escapes and HTML char refs."""
    needles: set[bytes] = set()
    for value in ids:
        needles.add(value.encode())
        needles.add(value[:17].encode())  # the body identifies the person as well
    for value in names:
        needles.add(value.encode())
        needles.add(json.dumps(value).strip('"').encode())
        needles.add(json.dumps(value).strip('"').upper().replace("\\U", "\\u").encode())
        needles.add(value.encode("ascii", "xmlcharrefreplace"))
        needles.add("".join(f"&#x{ord(c):x};" for c in value).encode())
        needles.add(html.escape(value).encode())
    return sorted(needles)


def test_connections_closed_after_run(database_url, passing_runs, failing_run):
    """The gate disposes GX's engines: no connection to the database outlives the run."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            others = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert others == 0
