"""Custom Great Expectations expectations for the resident data hub.

Importing this module registers, with GX's expectation and metric registries:

* the metric ``column_values.valid_cn_ric`` (Pandas and SqlAlchemy engines), and
* the expectation ``ExpectColumnValuesToBeValidCnRic``
  (snake-case name ``expect_column_values_to_be_valid_cn_ric``).

It must be imported before any suite that contains the expectation is loaded from
a data context, built into Data Docs or run; otherwise GX raises
``ExpectationNotFoundError``. ``expectations.gate`` imports it for you.

Unlike ``expectations.gate``, this module imports Great Expectations at module level:
registering an expectation means subclassing GX's classes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa
from great_expectations.execution_engine import (
    PandasExecutionEngine,
    SqlAlchemyExecutionEngine,
)
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from schemas.id_number import CHECK_CHARS, WEIGHTS, check_character

__all__ = ["CN_RIC_REGEX", "ColumnValuesValidCnRic", "ExpectColumnValuesToBeValidCnRic", "is_valid_cn_ric"]

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
