"""Tests for expectations.custom: each custom expectation on PostgreSQL (and pandas for the
row-level metrics), good rows passing and bad rows failing, and the PII-safe Data Docs action.

Each expectation is validated on its own through an ephemeral GX context (no Data Docs), on a
throwaway database of the test session's PostgreSQL server, dropped at module teardown.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from expectations.custom import (
    birth_date_and_sex_agree_with_cn_ric,
    exception_types,
    is_valid_cn_ric,
    scrub_exception_info,
)
from schemas.id_number import check_character

SAFE = {"result_format": "SUMMARY", "exclude_unexpected_values": True}


def make_id(body: str) -> str:
    return body + check_character(body)


ID_A = make_id("11010519491231002")  # 11010519491231002X: born 1949-12-31, female
ID_B = make_id("34052419800101001")  # born 1980-01-01, male
ID_C = make_id("44030419900307123")  # born 1990-03-07, male
ID_BAD_CHECKSUM = ID_C[:17] + ("0" if ID_C[17] != "0" else "1")
NAME = "东方测试壬"

# (id_number, birth_date, sex): rows that agree with the ID, or say nothing
AGREEING = [
    (ID_A, dt.date(1949, 12, 31), 2),
    (ID_B, dt.date(1980, 1, 1), 1),
    (ID_C, None, 1),  # no birth date: sex alone
    (ID_C, dt.date(1990, 3, 7), None),  # no sex: birth date alone
    (ID_C, dt.date(1990, 3, 7), 0),  # 0 unknown / 9 unspecified say nothing
    (ID_A, dt.date(1949, 12, 31), 9),
    (None, dt.date(2000, 1, 1), 1),  # no ID number
    ("110105491231002", dt.date(2000, 1, 1), 1),  # 15 characters: ignored
    ("ABCDEFGHIJKLMNOPQR", dt.date(2000, 1, 1), 2),  # not the GB 11643 shape: ignored
]
DISAGREEING = [
    (ID_A, dt.date(1949, 12, 30), 2),  # birth date one day off
    (ID_A, dt.date(1949, 12, 31), 1),  # even sequence digit, male
    (ID_B, dt.date(1980, 1, 1), 2),  # odd sequence digit, female
    (ID_C, dt.date(1909, 3, 7), None),  # century wrong
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scratch_url(server_admin_url):
    """A throwaway database with the tables below; dropped at module teardown."""
    name = f"hub_gxc_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in (
                "CREATE SCHEMA scratch",
                "CREATE SCHEMA mpi",
                "CREATE SCHEMA std",
                "CREATE TABLE scratch.ric_values (v text)",
                "CREATE TABLE scratch.people (id_number text, birth_date date, sex smallint)",
                "CREATE TABLE scratch.statuses (id_number_status text NOT NULL)",
                "CREATE TABLE scratch.named (name text)",
                "CREATE TABLE mpi.crosswalk (source text, source_record_id text, master_id text)",
                "CREATE TABLE mpi.golden (master_id text)",
                "CREATE TABLE mpi.match_feature (source text, source_record_id text, id_valid text)",
                "CREATE TABLE std.resident (source text, source_record_id text)",
            ):
                conn.execute(sa.text(stmt))
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def gx_postgres(scratch_url):
    """validate(table, expectation) on a table of the scratch database (search path: mpi)."""
    import great_expectations as gx

    import expectations.custom  # noqa: F401 - registers the custom expectations

    # The URL goes in as a runtime config variable: PostgresDsn rejects host-less
    # (UNIX socket) URLs, a ${VAR} placeholder skips that check.
    context = gx.get_context(mode="ephemeral", runtime_environment={"SCRATCH_URL": scratch_url})
    datasource = context.data_sources.add_postgres(
        "scratch",
        connection_string="${SCRATCH_URL}",
        kwargs={"connect_args": {"options": "-c search_path=mpi,scratch"}},
    )

    def validate(table: str, expectation):
        try:
            asset = datasource.get_asset(table)
        except LookupError:
            asset = datasource.add_table_asset(table, table_name=table)
        try:
            batch_definition = asset.get_batch_definition("all")
        except KeyError:
            batch_definition = asset.add_batch_definition_whole_table("all")
        return batch_definition.get_batch().validate(expectation, result_format=SAFE)

    yield validate
    for engine in (datasource.get_engine(), datasource.get_execution_engine().engine):
        engine.dispose()


def fill(url: str, table: str, rows: list[dict]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))  # fail, never hang, on a lock
            conn.execute(sa.text(f"TRUNCATE {table}"))
            if rows:
                columns = list(rows[0])
                conn.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(columns)})"
                        f" VALUES ({', '.join(':' + c for c in columns)})"
                    ),
                    rows,
                )
    finally:
        engine.dispose()


def pandas_batch(frame):
    import great_expectations as gx

    import expectations.custom  # noqa: F401

    context = gx.get_context(mode="ephemeral")
    return (
        context.data_sources.add_pandas("pd")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )


def people(rows: list[tuple]) -> list[dict]:
    return [dict(zip(("id_number", "birth_date", "sex"), r)) for r in rows]


# --------------------------------------------------------------------------- the check character


def test_check_character_helpers():
    assert ID_A == "11010519491231002X"
    assert is_valid_cn_ric(ID_A) and is_valid_cn_ric(ID_C)
    assert not is_valid_cn_ric(ID_BAD_CHECKSUM)
    assert not is_valid_cn_ric("11010519491231002x")  # lower-case x is not GB 11643
    assert not is_valid_cn_ric("110105491231002")  # 15-digit
    assert not is_valid_cn_ric("１１010519491231002X")  # full-width digits
    assert not is_valid_cn_ric(None)
    assert not is_valid_cn_ric(float("nan"))


def test_valid_cn_ric_sql_matches_python(scratch_url, gx_postgres):
    """The SqlAlchemy metric agrees with the Python check on many random values."""
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

    fill(scratch_url, "scratch.ric_values", [{"v": v} for v in values])
    result = gx_postgres("ric_values", ExpectColumnValuesToBeValidCnRic(column="v"))
    assert result.result["unexpected_count"] == expected_bad
    assert result.result["element_count"] == len(values)


def test_valid_cn_ric_pandas():
    import pandas as pd

    from expectations.custom import ExpectColumnValuesToBeValidCnRic

    frame = pd.DataFrame(
        {"v": [ID_A, ID_C, ID_BAD_CHECKSUM, "11010519491231002x", "110105491231002", None]}
    )
    result = pandas_batch(frame).validate(
        ExpectColumnValuesToBeValidCnRic(column="v"), result_format=SAFE
    )
    assert result.success is False
    assert result.result["unexpected_count"] == 3
    assert result.result["missing_count"] == 1


# --------------------------------------------------------------------------- birth date and sex


def test_birth_date_and_sex_rule():
    for row in AGREEING:
        assert birth_date_and_sex_agree_with_cn_ric(*row), row
    for row in DISAGREEING:
        assert not birth_date_and_sex_agree_with_cn_ric(*row), row
    # text dates and float sex codes (as pandas hands them over) read the same way
    assert birth_date_and_sex_agree_with_cn_ric(ID_A, "1949-12-31", 2.0)
    assert not birth_date_and_sex_agree_with_cn_ric(ID_A, "1949-12-30", float("nan"))
    assert birth_date_and_sex_agree_with_cn_ric(ID_A, float("nan"), float("nan"))


def test_birth_date_and_sex_postgres(scratch_url, gx_postgres):
    from expectations.custom import ExpectBirthDateAndSexToAgreeWithCnRic

    expectation = ExpectBirthDateAndSexToAgreeWithCnRic(column_list=["id_number", "birth_date", "sex"])
    fill(scratch_url, "scratch.people", people(AGREEING))
    good = gx_postgres("people", expectation)
    assert good.success is True, good.result
    assert good.result["unexpected_count"] == 0

    fill(scratch_url, "scratch.people", people(AGREEING + DISAGREEING))
    bad = gx_postgres("people", expectation)
    assert bad.success is False
    assert bad.result["unexpected_count"] == len(DISAGREEING)
    assert "partial_unexpected_list" not in bad.result  # values are never reported


def test_birth_date_and_sex_sql_matches_python(scratch_url, gx_postgres):
    """Random IDs with random (sometimes wrong) dates and sex codes: SQL and Python agree."""
    from expectations.custom import ExpectBirthDateAndSexToAgreeWithCnRic

    rng = random.Random(2261)
    rows = []
    for _ in range(400):
        born = dt.date(1920, 1, 1) + dt.timedelta(days=rng.randrange(36500))
        seq = f"{rng.randrange(1000):03d}"
        body = f"{rng.randrange(110000, 660000)}{born:%Y%m%d}{seq}"
        birth = born if rng.random() < 0.8 else born + dt.timedelta(days=rng.choice([-1, 1, 365]))
        sex = rng.choice([1, 2, 1, 2, 0, 9, None])
        rows.append((make_id(body), birth if rng.random() < 0.9 else None, sex))
    rows += AGREEING + DISAGREEING
    expected_bad = sum(1 for r in rows if not birth_date_and_sex_agree_with_cn_ric(*r))
    assert 50 < expected_bad < 300  # the sample has both kinds

    fill(scratch_url, "scratch.people", people(rows))
    result = gx_postgres(
        "people", ExpectBirthDateAndSexToAgreeWithCnRic(column_list=["id_number", "birth_date", "sex"])
    )
    assert result.result["unexpected_count"] == expected_bad


def test_birth_date_and_sex_pandas():
    import pandas as pd

    from expectations.custom import ExpectBirthDateAndSexToAgreeWithCnRic

    expectation = ExpectBirthDateAndSexToAgreeWithCnRic()  # default columns
    assert expectation.column_list == ["id_number", "birth_date", "sex"]
    good = pd.DataFrame(AGREEING, columns=expectation.column_list)
    result = pandas_batch(good).validate(expectation, result_format=SAFE)
    assert result.success is True and result.result["unexpected_count"] == 0

    bad = pd.DataFrame(AGREEING + DISAGREEING, columns=expectation.column_list)
    bad["birth_date"] = pd.to_datetime(bad["birth_date"])  # datetime64, as read_sql gives it
    result = pandas_batch(bad).validate(expectation, result_format=SAFE)
    assert result.success is False
    assert result.result["unexpected_count"] == len(DISAGREEING)


def test_birth_date_and_sex_needs_three_columns():
    from expectations.custom import ExpectBirthDateAndSexToAgreeWithCnRic

    with pytest.raises(ValueError, match="exactly three"):
        ExpectBirthDateAndSexToAgreeWithCnRic(column_list=["id_number", "birth_date"])


# --------------------------------------------------------------------------- ID validity share


def test_id_numbers_mostly_valid_postgres(scratch_url, gx_postgres):
    from expectations.custom import ExpectIdNumbersToBeMostlyValid

    statuses = ["valid"] * 8 + ["upgraded_from_15", "missing"]  # 90% usable
    fill(scratch_url, "scratch.statuses", [{"id_number_status": s} for s in statuses])
    assert gx_postgres("statuses", ExpectIdNumbersToBeMostlyValid(column="id_number_status", mostly=0.9)).success is True
    failed = gx_postgres("statuses", ExpectIdNumbersToBeMostlyValid(column="id_number_status", mostly=0.95))
    assert failed.success is False and failed.result["unexpected_count"] == 1

    third_blanked = ["valid"] * 6 + ["missing"] * 3  # a third of the numbers gone
    fill(scratch_url, "scratch.statuses", [{"id_number_status": s} for s in third_blanked])
    assert gx_postgres("statuses", ExpectIdNumbersToBeMostlyValid(column="id_number_status", mostly=0.9)).success is False


# --------------------------------------------------------------------------- cross-table checks


CROSS_TABLE = {
    # expectation class name: (good tables, what to add to make exactly one unexpected row)
    "ExpectStdRecordsToBeInCrosswalk": ("std.resident", [{"source": "a", "source_record_id": "9"}]),
    "ExpectCrosswalkRecordsToBeInStd": (
        "mpi.crosswalk",
        [{"source": "a", "source_record_id": "8", "master_id": "M1"}],
    ),
    "ExpectCrosswalkMasterIdsToHaveGoldenRecord": (
        "mpi.crosswalk",
        [{"source": "a", "source_record_id": "7", "master_id": "M9"}],
    ),
    "ExpectMastersToHoldOneValidIdNumber": (
        "mpi.match_feature",
        [{"source": "a", "source_record_id": "2", "id_valid": ID_B}],
    ),
}


def _good_mpi(url: str) -> None:
    records = [("a", "1", "M1", ID_A), ("a", "2", "M1", None), ("b", "1", "M2", ID_B)]
    fill(url, "std.resident", [{"source": s, "source_record_id": r} for s, r, _, _ in records])
    fill(
        url,
        "mpi.crosswalk",
        [{"source": s, "source_record_id": r, "master_id": m} for s, r, m, _ in records],
    )
    fill(url, "mpi.golden", [{"master_id": "M1"}, {"master_id": "M2"}])
    fill(
        url,
        "mpi.match_feature",
        [{"source": s, "source_record_id": r, "id_valid": i} for s, r, _, i in records],
    )


@pytest.mark.parametrize("name", sorted(CROSS_TABLE))
def test_cross_table_expectation_postgres(scratch_url, gx_postgres, name):
    import expectations.custom as custom

    cls = getattr(custom, name)
    _good_mpi(scratch_url)
    good = gx_postgres("crosswalk", cls())
    assert good.success is True, (name, good.exception_info)
    assert good.result["observed_value"] == 0

    table, extra = CROSS_TABLE[name]
    engine = sa.create_engine(scratch_url)
    try:
        with engine.begin() as conn:
            if table == "mpi.match_feature":  # record a/2 now carries another valid number
                conn.execute(sa.text("DELETE FROM mpi.match_feature WHERE source_record_id = '2'"))
            for row in extra:
                conn.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(row)})"
                        f" VALUES ({', '.join(':' + c for c in row)})"
                    ),
                    row,
                )
    finally:
        engine.dispose()
    bad = gx_postgres("crosswalk", cls())
    assert bad.success is False, name
    assert bad.result == {"observed_value": 1}  # a count, never the rows
    assert bad.expectation_config.type == cls().expectation_type
    assert bad.expectation_config.type.startswith("expect_")


# --------------------------------------------------------------------------- exception texts


def test_scrub_exception_info():
    assert scrub_exception_info({"raised_exception": False}) is None
    assert scrub_exception_info(None) is None
    leaky = {
        "raised_exception": True,
        "exception_message": f'(psycopg2.errors.InvalidTextRepresentation) invalid input syntax: "{NAME}"',
        "exception_traceback": f'Traceback ...\npsycopg2.errors.InvalidTextRepresentation: "{ID_A}"\n',
    }
    scrubbed = scrub_exception_info(leaky)
    assert scrubbed["raised_exception"] is True
    assert scrubbed["exception_traceback"] == scrubbed["exception_message"]
    assert NAME not in repr(scrubbed) and ID_A not in repr(scrubbed)
    assert exception_types(scrubbed) == ["psycopg2.errors.InvalidTextRepresentation"]
    per_metric = {"('column_values.nonnull.unexpected_count', ...)": leaky}
    assert exception_types(per_metric) == ["psycopg2.errors.InvalidTextRepresentation"]
    assert NAME not in repr(scrub_exception_info(per_metric))


@pytest.mark.parametrize("safe_action", [True, False], ids=["gate_action", "stock_action_control"])
def test_data_docs_action_withholds_exception_texts(scratch_url, tmp_path, safe_action):
    """A query that fails on a value puts that value into the database error; the gate's
    Data Docs action keeps it out of the stored results and the Data Docs (control: GX's own
    UpdateDataDocsAction stores and renders it)."""
    import json

    import great_expectations as gx

    from expectations.custom import PiiSafeUpdateDataDocsAction
    fill(scratch_url, "scratch.named", [{"name": NAME}])
    context = gx.get_context(
        mode="file", project_root_dir=str(tmp_path), runtime_environment={"SCRATCH_URL": scratch_url}
    )
    datasource = context.data_sources.add_postgres(
        "scratch",
        connection_string="${SCRATCH_URL}",
        kwargs={"connect_args": {"options": "-c search_path=scratch"}},
    )
    action_class = PiiSafeUpdateDataDocsAction if safe_action else gx.checkpoint.UpdateDataDocsAction
    try:
        asset = datasource.add_table_asset("named", table_name="named")
        suite = context.suites.add(gx.ExpectationSuite(name="leaky"))
        suite.add_expectation(
            gx.expectations.UnexpectedRowsExpectation(
                unexpected_rows_query="SELECT CAST(name AS integer) AS n FROM {batch}"
            )
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name="leaky", data=asset.add_batch_definition_whole_table("all"), suite=suite
            )
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="leaky",
                validation_definitions=[definition],
                actions=[action_class(name="docs")],
                result_format=SAFE,
            )
        )
        result = checkpoint.run()
    finally:
        for engine in (datasource.get_engine(), datasource.get_execution_engine().engine):
            engine.dispose()
    (suite_result,) = result.run_results.values()
    (evr,) = suite_result.results
    assert evr.success is False
    assert exception_types(evr.exception_info) == ["psycopg2.errors.InvalidTextRepresentation"]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" and "validations" in p.parts for p in files)
    assert any(p.suffix == ".json" and "validations" in p.parts for p in files)
    needles = (
        NAME.encode(),
        json.dumps(NAME)[1:-1].encode(),  # \uXXXX
        NAME.encode("ascii", "xmlcharrefreplace"),  # &#NNNNN;
        "".join(f"&#x{ord(c):x};" for c in NAME).encode(),
    )
    leaks = [p for p in files if any(n in p.read_bytes() for n in needles)]
    if safe_action:
        assert leaks == []
    else:
        assert leaks, "control: GX's own action was expected to store the database error"
