"""Custom Great Expectations expectations for the resident data hub.

Importing this module registers, with GX's expectation and metric registries:

* ``ExpectColumnValuesToBeValidCnRic`` (``expect_column_values_to_be_valid_cn_ric``) and its
  metric ``column_values.valid_cn_ric`` (Pandas and SqlAlchemy engines): the GB 11643 check
  character;
* ``ExpectBirthDateAndSexToAgreeWithCnRic`` (``expect_birth_date_and_sex_to_agree_with_cn_ric``)
  and its metric ``multicolumn_values.birth_date_and_sex_agree_with_cn_ric`` (Pandas and
  SqlAlchemy): birth date and sex match what the ID number encodes;
* ``ExpectIdNumbersToBeMostlyValid`` (``expect_id_numbers_to_be_mostly_valid``): the share of
  records whose ID number status is usable (``valid`` / ``upgraded_from_15``);
* cross-table checks on PostgreSQL, each an ``UnexpectedRowsExpectation`` with a fixed query
  that selects key columns only and a description, run on the ``mpi.crosswalk`` batch:
  ``ExpectStdRecordsToBeInCrosswalk``, ``ExpectCrosswalkRecordsToBeInStd``,
  ``ExpectCrosswalkMasterIdsToHaveGoldenRecord`` and ``ExpectMastersToHoldOneValidIdNumber``;
* the checkpoint action ``PiiSafeUpdateDataDocsAction`` (type ``hub_pii_safe_update_data_docs``):
  Data Docs built once per checkpoint run, from results whose exception texts were withheld.

It must be imported before any suite or checkpoint that contains these is loaded from a data
context, built into Data Docs or run; otherwise GX raises ``ExpectationNotFoundError`` (or
cannot read the checkpoint's action). ``expectations.gate`` imports it for you.

Unlike ``expectations.gate``, this module imports Great Expectations at module level:
registering an expectation means subclassing GX's classes.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar, Literal

import pandas as pd
import sqlalchemy as sa
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.compatibility import pydantic
from great_expectations.execution_engine import (
    PandasExecutionEngine,
    SqlAlchemyExecutionEngine,
)
from great_expectations.expectations import ExpectColumnValuesToBeInSet, UnexpectedRowsExpectation
from great_expectations.expectations.expectation import ColumnMapExpectation, MulticolumnMapExpectation
from great_expectations.expectations.metrics import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider import MulticolumnMapMetricProvider
from great_expectations.expectations.metrics.map_metric_provider.multicolumn_condition_partial import (
    multicolumn_condition_partial,
)

from schemas.id_number import CHECK_CHARS, USABLE, WEIGHTS, check_character
from warehouse import validation

__all__ = [
    "CN_RIC_REGEX",
    "CROSSWALK_NOT_IN_STD_QUERY",
    "MASTERS_WITH_TWO_VALID_IDS_QUERY",
    "ORPHAN_CROSSWALK_QUERY",
    "STD_NOT_IN_CROSSWALK_QUERY",
    "ColumnValuesValidCnRic",
    "ExpectBirthDateAndSexToAgreeWithCnRic",
    "ExpectColumnValuesToBeValidCnRic",
    "ExpectCrosswalkMasterIdsToHaveGoldenRecord",
    "ExpectCrosswalkRecordsToBeInStd",
    "ExpectIdNumbersToBeMostlyValid",
    "ExpectMastersToHoldOneValidIdNumber",
    "ExpectStdRecordsToBeInCrosswalk",
    "MulticolumnValuesBirthDateAndSexAgreeWithCnRic",
    "PiiSafeUpdateDataDocsAction",
    "birth_date_and_sex_agree_with_cn_ric",
    "exception_raised",
    "exception_types",
    "is_valid_cn_ric",
    "scrub_exception_info",
]

#: Shape of an 18-character citizen identity number (upper-case X only).
CN_RIC_REGEX = r"^[0-9]{17}[0-9X]$"
_ASCII_DIGITS = frozenset("0123456789")


def is_valid_cn_ric(value: Any) -> bool:
    """True if ``value`` is an 18-char GB 11643 number whose check character is right.

    Only the shape and the check character are verified (no region or date check).
    """
    if not isinstance(value, str) or len(value) != 18 or not set(value[:17]) <= _ASCII_DIGITS:
        return False
    return check_character(value[:17]) == value[17]


class ColumnValuesValidCnRic(ColumnMapMetricProvider):
    """Row-level condition: the value is a GB 11643 number with a valid check character."""

    condition_metric_name = "column_values.valid_cn_ric"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        # Nulls are filtered out by GX before this runs; map() keeps the index aligned.
        return column.map(is_valid_cn_ric).astype(bool)

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, **kwargs):
        weighted_sum = sum(
            sa.cast(sa.func.substr(column, i + 1, 1), sa.Integer) * w
            for i, w in enumerate(WEIGHTS.tolist())
        )
        expected = sa.func.substr(
            sa.literal(CHECK_CHARS), sa.func.mod(weighted_sum, 11) + 1, 1
        )
        # PostgreSQL POSIX regex operator. CASE (not AND) guards the integer casts: SQL
        # does not promise left-to-right evaluation of AND, and casting a non-digit
        # would abort the whole query (with the offending value in the error text).
        well_formed = column.op("~")(CN_RIC_REGEX)
        return sa.case(
            (well_formed, sa.func.substr(column, 18, 1) == expected),
            else_=sa.false(),
        )


class ExpectColumnValuesToBeValidCnRic(ColumnMapExpectation):
    """Expect column values to be GB 11643-1999 citizen identity numbers with a valid check character.

    The value must be 17 ASCII digits followed by the ISO 7064 MOD 11-2 check character
    (``0``-``9`` or upper-case ``X``). Nulls are ignored, as for every column map
    expectation. Region code and birth date are not checked.

    Args:
        column: the column to check.
        mostly: the fraction of non-null values that must be valid (default 1.0).
    """

    map_metric = "column_values.valid_cn_ric"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)

    description: str | None = (
        "values must be GB 11643-1999 citizen identity numbers with a valid "
        "MOD 11-2 check character"
    )

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "experimental",
        "tags": ["pii", "china", "gb11643"],
        "contributors": ["resident-data-hub"],
    }


# --------------------------------------------------------------------------- birth date and sex vs ID

_ODD_DIGITS = ("1", "3", "5", "7", "9")


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _yyyymmdd(value: Any) -> str | None:
    """A date (or ``YYYY-MM-DD`` text) as ``YYYYMMDD``; None for nulls and anything unreadable."""
    if _is_null(value):
        return None
    if isinstance(value, (dt.date, pd.Timestamp)):
        return f"{value.year:04d}{value.month:02d}{value.day:02d}"
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-":
        return value[:4] + value[5:7] + value[8:10]
    return None


def birth_date_and_sex_agree_with_cn_ric(id_number: Any, birth_date: Any, sex: Any) -> bool:
    """True unless a well-formed 18-character ID number contradicts the birth date or the sex.

    ID digits 7-14 are the birth date (``YYYYMMDD``); digit 17 is odd for men (sex 1) and
    even for women (sex 2). Rows without a well-formed number, a null birth date, and sex
    codes other than 1 and 2 (0 unknown, 9 unspecified, null) say nothing and agree.
    """
    if not isinstance(id_number, str) or len(id_number) != 18:
        return True
    if not set(id_number[:17]) <= _ASCII_DIGITS or id_number[17] not in "0123456789X":
        return True
    if not _is_null(birth_date) and _yyyymmdd(birth_date) != id_number[6:14]:
        return False  # includes a birth date that cannot be read as a date
    try:
        code = int(sex)
    except (TypeError, ValueError, OverflowError):
        return True
    if code not in (1, 2):
        return True
    return code == (1 if id_number[16] in _ODD_DIGITS else 2)


class MulticolumnValuesBirthDateAndSexAgreeWithCnRic(MulticolumnMapMetricProvider):
    """Row-level condition over (id_number, birth_date, sex), in that order: see
    :func:`birth_date_and_sex_agree_with_cn_ric`."""

    condition_metric_name = "multicolumn_values.birth_date_and_sex_agree_with_cn_ric"
    condition_domain_keys = (
        "batch_id",
        "table",
        "column_list",
        "row_condition",
        "condition_parser",
        "ignore_row_if",
    )

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_list, **kwargs):
        # Row-wise in Python: the pandas engine validates small frames (tests, file checks);
        # warehouse tables go through the SQL condition below.
        frame = column_list
        agree = [
            birth_date_and_sex_agree_with_cn_ric(i, b, s)
            for i, b, s in zip(frame.iloc[:, 0], frame.iloc[:, 1], frame.iloc[:, 2])
        ]
        return pd.Series(agree, index=frame.index, dtype=bool)

    @multicolumn_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_list, **kwargs):
        id_number, birth_date, sex = column_list
        # Text comparisons only (to_char of the date against the ID's digits; the sex digit
        # against a list of characters): no cast of ID text, which could fail on odd values
        # and put them into an error message.
        birth_ok = sa.or_(
            birth_date.is_(None),
            sa.func.to_char(birth_date, "YYYYMMDD") == sa.func.substr(id_number, 7, 8),
        )
        id_sex = sa.case((sa.func.substr(id_number, 17, 1).in_(_ODD_DIGITS), 1), else_=2)
        sex_ok = sa.or_(sex.is_(None), sex.not_in([1, 2]), sex == id_sex)
        well_formed = id_number.op("~")(CN_RIC_REGEX)
        return sa.case((well_formed, sa.and_(birth_ok, sex_ok)), else_=sa.true())


class ExpectBirthDateAndSexToAgreeWithCnRic(MulticolumnMapExpectation):
    """Expect birth date and sex to agree with what the citizen ID number encodes.

    ``column_list`` names three columns, in this order: the ID number (text), the birth date
    (a date) and the GB/T 2261.1 sex code (1 male, 2 female). ID digits 7-14 must equal the
    birth date (``YYYYMMDD``) and digit 17 must be odd for sex 1 and even for sex 2. Rows whose
    ID number is null or not 18 characters of the GB 11643 shape are ignored, as are a null
    birth date and sex codes 0, 9 or null.

    Args:
        column_list: ``[id_number, birth_date, sex]`` (default: those column names).
        mostly: the share of rows that must agree (default 1.0).
    """

    column_list: list[str] = pydantic.Field(default_factory=lambda: ["id_number", "birth_date", "sex"])
    map_metric = "multicolumn_values.birth_date_and_sex_agree_with_cn_ric"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)

    description: str | None = (
        "birth date and sex must agree with the citizen ID number "
        "(digits 7-14 the birth date, digit 17 odd for men and even for women)"
    )

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "experimental",
        "tags": ["pii", "china", "gb11643"],
        "contributors": ["resident-data-hub"],
    }

    @pydantic.validator("column_list")
    def _three_columns(cls, v: list[str]) -> list[str]:
        if len(v) != 3:
            raise ValueError("column_list must name exactly three columns: id number, birth date, sex")
        return v


# --------------------------------------------------------------------------- ID number validity share


class ExpectIdNumbersToBeMostlyValid(ExpectColumnValuesToBeInSet):
    """Expect at least ``mostly`` of the records to carry a usable ID number.

    ``column`` is the ID number status column (``id_number_status`` in std.resident); usable
    means ``valid`` or ``upgraded_from_15`` (``schemas.id_number.USABLE``, the default
    ``value_set``). A subclass of ``ExpectColumnValuesToBeInSet``, so that the gate reports it
    under its own name beside the code-set check of the same column.
    """

    value_set: list = pydantic.Field(default_factory=lambda: list(USABLE))
    description: str | None = "share of records whose ID number is valid (or upgraded from 15 digits)"


# --------------------------------------------------------------------------- cross-table checks
#
# UnexpectedRowsExpectations with a fixed query, run on the mpi.crosswalk batch. The queries come from
# the warehouse (warehouse.validation, which says why each has the JOIN form and no braces but {batch});
# they select key columns only: GX fetches up to 200 of the rows but reports only their count below
# result format COMPLETE.

#: std.resident records that have no crosswalk row (no master id).
STD_NOT_IN_CROSSWALK_QUERY = validation.std_records_without_crosswalk_query()
#: crosswalk rows whose record is no longer in std.resident.
CROSSWALK_NOT_IN_STD_QUERY = validation.crosswalk_records_not_in_std_query()
#: crosswalk rows whose master id has no golden record.
ORPHAN_CROSSWALK_QUERY = validation.crosswalk_masters_without_golden_query()
#: master ids whose records carry two or more different valid ID numbers.
MASTERS_WITH_TWO_VALID_IDS_QUERY = validation.masters_with_two_valid_ids_query()


class _CountedRowsExpectation(UnexpectedRowsExpectation):
    """An ``UnexpectedRowsExpectation`` that counts its unexpected rows and never fetches them.

    GX's own also fetches the rows (metric ``unexpected_rows_query.table``), which it shows only in the
    COMPLETE result format the gate never uses: the query ran twice (at 200,000 persons ≈ 1.2 s of every
    gate run) and the rows of record keys came back to the process for nothing. The result is the same:
    success when the count is 0, the count as the observed value.
    """

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None,
                  execution_engine: Any = None) -> dict:
        count = metrics["unexpected_rows_query.row_count"]
        return {"success": count == 0, "result": {"observed_value": count}}


class ExpectStdRecordsToBeInCrosswalk(_CountedRowsExpectation):
    """Expect every ``std.resident`` record to have a row (a master id) in ``mpi.crosswalk``.

    Run on the ``mpi.crosswalk`` batch (PostgreSQL). With the compound-unique check on the
    crosswalk's (source, source_record_id) this makes "every record exactly once".
    """

    unexpected_rows_query: str = STD_NOT_IN_CROSSWALK_QUERY
    description: str | None = "every std.resident record has a master id in mpi.crosswalk"


class ExpectCrosswalkRecordsToBeInStd(_CountedRowsExpectation):
    """Expect every ``mpi.crosswalk`` row to name a record that is in ``std.resident``."""

    unexpected_rows_query: str = CROSSWALK_NOT_IN_STD_QUERY
    description: str | None = "every mpi.crosswalk row names a record in std.resident"


class ExpectCrosswalkMasterIdsToHaveGoldenRecord(_CountedRowsExpectation):
    """Expect every master id used in ``mpi.crosswalk`` to have a row in ``mpi.golden``."""

    unexpected_rows_query: str = ORPHAN_CROSSWALK_QUERY
    description: str | None = "every crosswalk master_id has a golden record in mpi.golden"


class ExpectMastersToHoldOneValidIdNumber(_CountedRowsExpectation):
    """Expect no master id to hold records with two different valid ID numbers.

    Uses ``mpi.match_feature.id_valid`` (a record's clean number when valid and trusted).
    """

    unexpected_rows_query: str = MASTERS_WITH_TWO_VALID_IDS_QUERY
    description: str | None = "no master id holds two different valid ID numbers (mpi.match_feature.id_valid)"


# --------------------------------------------------------------------------- Data Docs without exception texts

# "(psycopg2.errors.UndefinedTable) relation ..." (SQLAlchemy's wrapping of a DBAPI error), or
# a traceback's last line "psycopg2.errors.UndefinedTable: ..." / "ValueError: ...".
_WRAPPED_TYPE = re.compile(r"^\(([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\)")
_LEADING_TYPE = re.compile(
    r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*(?:Error|Exception|Warning|Exit|Interrupt)):"
)


def exception_type_name(info: Any) -> str:
    """The exception's type name read from a GX exception record (``"exception"`` if unknown)."""
    if not isinstance(info, dict):
        return "exception"
    traceback = info.get("exception_traceback")
    message = info.get("exception_message")
    candidates = []
    if isinstance(traceback, str) and traceback.strip():
        candidates.append((_LEADING_TYPE, traceback.strip().splitlines()[-1]))
    if isinstance(message, str):
        candidates += [(_WRAPPED_TYPE, message.strip()), (_LEADING_TYPE, message.strip())]
    for pattern, text in candidates:
        match = pattern.match(text)
        if match:
            return match.group(1)
    return "exception"


def exception_raised(exception_info: Any) -> bool:
    """True if a GX result's ``exception_info`` records an exception, in either of its forms
    (``{"raised_exception": ...}`` or one such record per aborted metric)."""
    if not isinstance(exception_info, dict):
        return False
    if exception_info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in exception_info.values())


_WITHHELD = " raised while computing this expectation; the message is withheld"


def exception_types(exception_info: Any) -> list[str]:
    """The type names of the exceptions a GX result's ``exception_info`` records (sorted)."""
    if not exception_raised(exception_info):
        return []
    records = [exception_info] if exception_info.get("raised_exception") else [
        v for v in exception_info.values() if isinstance(v, dict) and v.get("raised_exception")
    ]
    types: set[str] = set()
    for record in records:
        message = record.get("exception_message")
        if isinstance(message, str) and _WITHHELD in message:  # already scrubbed
            types.update(t.strip() for t in message.split(_WITHHELD)[0].split(","))
        else:
            types.add(exception_type_name(record))
    return sorted(types)


def scrub_exception_info(exception_info: Any) -> dict | None:
    """A replacement ``exception_info`` naming only the exception type(s), or None if nothing was raised.

    Exception messages and tracebacks can quote SQL literals and data values (a database error
    names the value it choked on), so stored results and Data Docs keep the type only.
    """
    types = exception_types(exception_info)
    if not types:
        return None
    message = f"{', '.join(types)}{_WITHHELD} because it may quote data (see the database server's log)"
    # Data Docs render the traceback as text: it must be a string.
    return {"raised_exception": True, "exception_traceback": message, "exception_message": message}


class PiiSafeUpdateDataDocsAction(UpdateDataDocsAction):
    """``UpdateDataDocsAction`` that first strips exception texts from the results, and builds once.

    Before the Data Docs are built, every exception record in the checkpoint's results is
    replaced by one naming the exception type only (:func:`scrub_exception_info`), in memory
    and in the validation results store. The site is then built once for all the run's
    validation results, instead of once per result. GX runs ``UpdateDataDocsAction`` (and
    subclasses) before every other action, so no other action sees the unscrubbed texts.
    """

    type: Literal["hub_pii_safe_update_data_docs"] = "hub_pii_safe_update_data_docs"

    def run(self, checkpoint_result: Any, action_context: Any = None) -> dict:
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        context = self._resolve_context().context
        identifiers: list[Any] = []
        for result_identifier, suite_result in checkpoint_result.run_results.items():
            scrubbed = False
            for evr in suite_result.results:
                replacement = scrub_exception_info(evr.exception_info)
                if replacement is not None:
                    evr.exception_info = replacement
                    scrubbed = True
            if scrubbed:
                context.validation_results_store.set(result_identifier, suite_result)
            identifiers += [result_identifier, ExpectationSuiteIdentifier(name=suite_result.suite_name)]
        if not identifiers:
            return {}
        self._build_data_docs(site_names=self.site_names or None, resource_identifiers=identifiers)
        results: dict[Any, dict[str, str]] = {}
        for result_identifier in checkpoint_result.run_results:
            sites = self._get_docs_sites_urls(resource_identifier=result_identifier, site_names=self.site_names)
            results[result_identifier] = {s["site_name"]: s["site_url"] for s in sites}
        return results
