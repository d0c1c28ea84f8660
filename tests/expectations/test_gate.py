"""Tests for expectations.gate: the Great Expectations gate on mpi.crosswalk / mpi.golden.

Runs on the test session's PostgreSQL server (the embedded one, or ``HUB_TEST_DATABASE_URL``).
The module creates a throwaway database there, builds the two MPI tables in it and drops it
afterwards. The embedded server is reached over a UNIX socket; for a TCP server the socket test
looks for the server's socket in ``HUB_TEST_PG_SOCKET_DIR`` (default ``/var/run/postgresql``).
"""

from __future__ import annotations

import html
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from expectations.custom import is_valid_cn_ric
from schemas.id_number import check_character as cn_ric_check_character

SOCKET_DIR = os.environ.get("HUB_TEST_PG_SOCKET_DIR", "/var/run/postgresql")

DDL = [
    "CREATE SCHEMA mpi",
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
]


def make_id(body: str) -> str:
    return body + cn_ric_check_character(body)


def corrupt_check(valid_id: str) -> str:
    """Same body, wrong (but well-formed) check character."""
    right = valid_id[17]
    return valid_id[:17] + ("0" if right != "0" else "1")


# Known values that must never show up under gx_dir.
ID_A = make_id("11010519491231002")  # 11010519491231002X, GB 11643 worked example
ID_B = make_id("34052419800101001")  # 34052419800101001X
ID_C = make_id("44030419900307123")
ID_D = make_id("51010720011111456")
ID_BAD_CHECKSUM = corrupt_check(make_id("32010619750512789"))
NAME_A = "欧阳测试甲"
NAME_B = "司马测试乙"
NAME_C = "Zhugekongming Testname"
NAME_D = "上官测试丁"
NAME_BAD = "慕容测试戊"
NAME_DUP = "诸葛测试己"

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
    ("M0006", "某某", ID_D, "valid", 0, "2001-11-11", 1),
]
GOOD_CROSSWALK = [
    ("minzheng", "mz-001", "M0001", "exact_id"),
    ("weijian", "wj-001", "M0001", "exact_id"),
    ("minzheng", "mz-002", "M0002", "exact_id"),
    ("minzheng", "mz-003", "M0003", "probabilistic"),
    ("weijian", "wj-003", "M0003", "probabilistic"),
    ("renshe", "rs-003", "M0003", "probabilistic"),
    ("renshe", "rs-004", "M0004", "singleton"),
    ("weijian", "wj-005", "M0005", "singleton"),
    ("renshe", "rs-006", "M0006", "exact_id"),
]

# Failing dataset: one ID with a wrong check character, one valid ID held by two masters,
# one crosswalk row pointing at a master that does not exist. Nothing else is wrong.
BAD_GOLDEN = GOOD_GOLDEN + [
    ("M0007", NAME_BAD, ID_BAD_CHECKSUM, "valid", 1, "1975-05-12", 1),
    ("M0008", NAME_DUP, ID_A, "valid", 2, "1949-12-31", 1),
]
BAD_CROSSWALK = GOOD_CROSSWALK + [
    ("minzheng", "mz-007", "M0007", "exact_id"),
    ("weijian", "wj-008", "M0008", "exact_id"),
    ("renshe", "rs-999", "M9999", "exact_id"),  # orphan
]
EXPECTED_FAILURES = {
    ("mpi.golden", "expect_column_values_to_be_valid_cn_ric", "id_number"),
    ("mpi.golden", "expect_column_values_to_be_unique", "id_number"),
    ("mpi.crosswalk", "unexpected_rows_expectation", None),
}

ALL_IDS = [ID_A, ID_B, ID_C, ID_D, ID_BAD_CHECKSUM]
ALL_NAMES = [NAME_A, NAME_B, NAME_C, NAME_D, NAME_BAD, NAME_DUP]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def database_url(server_admin_url):
    """A fresh database holding the mpi schema; dropped at module teardown."""
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


def load(url: str, golden: list[tuple], crosswalk: list[tuple]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE mpi.crosswalk, mpi.golden"))
            conn.execute(
                sa.text(
                    "INSERT INTO mpi.golden VALUES (:master_id, :name, :id_number,"
                    " :id_number_status, :sex, CAST(:birth_date AS date), :record_count)"
                ),
                [dict(zip(GOLDEN_COLUMNS, row)) for row in golden],
            )
            conn.execute(
                sa.text(
                    "INSERT INTO mpi.crosswalk VALUES"
                    " (:source, :source_record_id, :master_id, :match_rule)"
                ),
                [
                    dict(
                        zip(
                            ("source", "source_record_id", "master_id", "match_rule"), r
                        )
                    )
                    for r in crosswalk
                ],
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def passing_runs(database_url, tmp_path_factory):
    """Good data validated twice with the same gx_dir (idempotency), with timings."""
    from expectations.gate import validate_master_index

    gx_dir = tmp_path_factory.mktemp("gx_pass")
    load(database_url, GOOD_GOLDEN, GOOD_CROSSWALK)
    summaries, timings = [], []
    for _ in range(2):
        started = time.perf_counter()
        summaries.append(validate_master_index(database_url, gx_dir))
        timings.append(time.perf_counter() - started)
    return gx_dir, summaries, timings


@pytest.fixture(scope="module")
def failing_run(database_url, tmp_path_factory):
    from expectations.gate import validate_master_index

    gx_dir = tmp_path_factory.mktemp("gx_fail")
    load(database_url, BAD_GOLDEN, BAD_CROSSWALK)
    return gx_dir, validate_master_index(database_url, gx_dir)


def failures(summary) -> set[tuple]:
    return {
        (o.table, o.expectation, o.column) for o in summary.outcomes if not o.success
    }


# --------------------------------------------------------------------------- tests


def test_import_is_cheap():
    code = (
        "import sys, expectations.gate; assert 'great_expectations' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_check_character_helpers():
    assert ID_A == "11010519491231002X"
    assert ID_B == "34052419800101001X"
    assert is_valid_cn_ric(ID_A) and is_valid_cn_ric(ID_C)
    assert not is_valid_cn_ric(ID_BAD_CHECKSUM)
    assert not is_valid_cn_ric("11010519491231002x")  # lower-case x is not GB 11643
    assert not is_valid_cn_ric("110105491231002")  # 15-digit
    assert not is_valid_cn_ric("１１010519491231002X")  # full-width digits
    assert not is_valid_cn_ric(None)
    assert not is_valid_cn_ric(float("nan"))


def test_passing_dataset(passing_runs):
    _, summaries, _ = passing_runs
    for summary in summaries:
        assert summary.suite == "master_index"
        assert summary.success is True
        assert summary.evaluated == len(summary.outcomes) == 11
        assert summary.successful == 11 and summary.failed == 0
        assert all(o.success for o in summary.outcomes)
    kinds = {(o.table, o.expectation, o.column) for o in summaries[0].outcomes}
    assert kinds >= {
        ("mpi.crosswalk", "expect_column_values_to_not_be_null", "master_id"),
        (
            "mpi.crosswalk",
            "expect_compound_columns_to_be_unique",
            "source,source_record_id",
        ),
        ("mpi.crosswalk", "expect_table_row_count_to_be_between", None),
        ("mpi.crosswalk", "unexpected_rows_expectation", None),
        ("mpi.golden", "expect_column_values_to_be_unique", "master_id"),
        ("mpi.golden", "expect_column_values_to_match_regex", "id_number"),
        ("mpi.golden", "expect_column_values_to_be_valid_cn_ric", "id_number"),
        ("mpi.golden", "expect_column_values_to_be_unique", "id_number"),
        ("mpi.golden", "expect_column_values_to_be_in_set", "id_number_status"),
        ("mpi.golden", "expect_column_values_to_be_in_set", "sex"),
        ("mpi.golden", "expect_column_values_to_be_between", "record_count"),
    }
    row_count = next(
        o
        for o in summaries[0].outcomes
        if o.expectation == "expect_table_row_count_to_be_between"
    )
    assert row_count.observed == f"{len(GOOD_CROSSWALK)} rows"


def test_failing_dataset(failing_run):
    _, summary = failing_run
    assert summary.success is False
    assert failures(summary) == EXPECTED_FAILURES
    assert summary.failed == 3 and summary.successful == summary.evaluated - 3
    by_key = {(o.table, o.expectation, o.column): o for o in summary.outcomes}
    checksum = by_key[
        ("mpi.golden", "expect_column_values_to_be_valid_cn_ric", "id_number")
    ]
    assert checksum.unexpected_count == 1
    assert checksum.unexpected_percent == pytest.approx(100 / 6)  # 6 non-null IDs
    duplicate = by_key[("mpi.golden", "expect_column_values_to_be_unique", "id_number")]
    assert duplicate.unexpected_count == 2  # both rows holding the shared ID
    assert duplicate.unexpected_percent == pytest.approx(100 * 2 / 6)
    orphan = by_key[("mpi.crosswalk", "unexpected_rows_expectation", None)]
    assert orphan.unexpected_count == 1 and orphan.observed == "1 unexpected row"


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
    load(database_url, BAD_GOLDEN, BAD_CROSSWALK)
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


def test_rerun_updates_suite_in_place(database_url, passing_runs):
    """Same gx_dir again, with a smaller cluster bound: the stored suite is updated."""
    from expectations.gate import validate_master_index

    gx_dir = passing_runs[0]
    load(database_url, GOOD_GOLDEN, GOOD_CROSSWALK)
    summary = validate_master_index(database_url, gx_dir, max_cluster_size=2)
    assert failures(summary) == {
        ("mpi.golden", "expect_column_values_to_be_between", "record_count")
    }
    assert summary.evaluated == 11
    again = validate_master_index(database_url, gx_dir)
    assert again.success is True and again.evaluated == 11


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

    load(database_url, GOOD_GOLDEN, GOOD_CROSSWALK)
    summary = validate_master_index(socket_url, tmp_path / "gx")
    assert summary.success is True and summary.evaluated == 11
    load(database_url, BAD_GOLDEN, BAD_CROSSWALK)
    summary = validate_master_index(socket_url, tmp_path / "gx")
    assert failures(summary) == EXPECTED_FAILURES
    for path in (p for p in (tmp_path / "gx").rglob("*") if p.is_file()):
        assert socket_dir.encode() not in path.read_bytes(), path


def test_custom_expectation_sql_matches_python(database_url):
    """The SqlAlchemy metric agrees with the Python check on many random values."""
    import great_expectations as gx

    from expectations.custom import ExpectColumnValuesToBeValidCnRic

    rng = random.Random(11643)
    values = []
    for _ in range(300):
        body = "".join(rng.choice("0123456789") for _ in range(17))
        values.append(make_id(body))
        values.append(body + rng.choice("0123456789X"))  # right ~1/11 of the time
    values += ["11010519491231002x", "110105491231002", "ABCDEFGHIJKLMNOPQR", "", None]
    values += ["1101051949123100 X", "11010519491231002XX", "-1010519491231002X"]
    expected_bad = sum(1 for v in values if v is not None and not is_valid_cn_ric(v))

    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS scratch"))
            conn.execute(sa.text("DROP TABLE IF EXISTS scratch.ric_values"))
            conn.execute(sa.text("CREATE TABLE scratch.ric_values (v text)"))
            conn.execute(
                sa.text("INSERT INTO scratch.ric_values VALUES (:v)"),
                [{"v": v} for v in values],
            )
    finally:
        engine.dispose()

    # The URL goes in as a runtime config variable: PostgresDsn rejects host-less
    # (UNIX socket) URLs, a ${VAR} placeholder skips that check.
    context = gx.get_context(
        mode="ephemeral", runtime_environment={"SCRATCH_URL": database_url}
    )
    datasource = context.data_sources.add_postgres(
        "scratch",
        connection_string="${SCRATCH_URL}",
        kwargs={"connect_args": {"options": "-c search_path=scratch"}},
    )
    try:
        batch = (
            datasource.add_table_asset("ric_values", table_name="ric_values")
            .add_batch_definition_whole_table("all")
            .get_batch()
        )
        result = batch.validate(
            ExpectColumnValuesToBeValidCnRic(column="v"),
            result_format={
                "result_format": "SUMMARY",
                "exclude_unexpected_values": True,
            },
        )
    finally:
        for engine in (
            datasource.get_engine(),
            datasource.get_execution_engine().engine,
        ):
            engine.dispose()
    assert result.result["unexpected_count"] == expected_bad
    assert result.result["element_count"] == len(values)


def test_custom_expectation_pandas():
    import great_expectations as gx
    import pandas as pd

    from expectations.custom import ExpectColumnValuesToBeValidCnRic

    frame = pd.DataFrame(
        {
            "v": [
                ID_A,
                ID_C,
                ID_BAD_CHECKSUM,
                "11010519491231002x",
                "110105491231002",
                None,
            ]
        }
    )
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("pd")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(
        ExpectColumnValuesToBeValidCnRic(column="v"),
        result_format={"result_format": "SUMMARY", "exclude_unexpected_values": True},
    )
    assert result.success is False
    assert result.result["unexpected_count"] == 3
    assert result.result["missing_count"] == 1


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
