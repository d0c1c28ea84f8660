"""What a gate run found, free of personal data: one :class:`ExpectationOutcome` per expectation and one
:class:`ValidationSummary` per suite group, read from Great Expectations' suite results.

Only counts, percentages and short texts made from them are kept: never a column value. An expectation that
raised is reported by its exception's type only (the message can quote data).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ExpectationOutcome", "ValidationSummary", "summarize_suite_group"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, free of personal data.

    ``expectation`` is the GX expectation type (``"expect_column_values_to_not_be_null"``,
    ``"expect_std_records_to_be_in_crosswalk"`` for a cross-table check). ``column`` is the
    column, ``"a,b"`` for compound-column checks and None for table-level checks. ``observed``
    is short text made from counts and percentages only. ``unexpected_percent`` is GX's
    percentage of non-null values (None where GX reports none). ``table`` names the batch the
    expectation ran on: ``"mpi.golden"``, ``"mpi.crosswalk"`` or ``"std.resident[<source>]"``.
    """

    expectation: str
    column: str | None
    success: bool
    observed: str
    unexpected_count: int | None
    unexpected_percent: float | None
    table: str | None = None


@dataclass(frozen=True)
class ValidationSummary:
    """Outcome of one suite group of a gate run (``source.<name>`` or ``master_index``).

    ``row_count`` is the number of rows the suite saw: the source's std.resident rows, or the
    masters in mpi.golden for ``master_index`` (None if no expectation reported it).
    """

    suite: str
    success: bool
    evaluated: int
    successful: int
    failed: int
    outcomes: list[ExpectationOutcome]
    docs_index: Path | None  # the Data Docs index.html
    row_count: int | None = None


def summarize_suite_group(
    name: str,
    parts: list[tuple[Any, str]],
    docs_index: Path | None,
    *,
    row_count_table: str | None = None,
) -> ValidationSummary:
    """One suite group's summary from its GX suite results (None for a suite that did not run)."""
    outcomes: list[ExpectationOutcome] = []
    row_count: int | None = None
    all_ran = True
    gx_success = True
    for suite_result, table in parts:
        if suite_result is None:  # pragma: no cover - every validation definition runs
            all_ran = False
            continue
        gx_success = gx_success and bool(suite_result.success)
        outcomes += [_outcome(evr, table) for evr in suite_result.results]
        if row_count_table is None or table == row_count_table:
            row_count = _rows_seen(suite_result)
    successful = sum(1 for o in outcomes if o.success)
    return ValidationSummary(
        suite=name,
        success=all_ran and gx_success and successful == len(outcomes),
        evaluated=len(outcomes),
        successful=successful,
        failed=len(outcomes) - successful,
        outcomes=outcomes,
        docs_index=docs_index,
        row_count=row_count,
    )


def _rows_seen(suite_result: Any) -> int | None:
    """Rows in the suite's batch, as GX counted them (element_count / the row-count value)."""
    counts = []
    for evr in suite_result.results:
        result = evr.result or {}
        count = _as_int(result.get("element_count"))
        if count is None and evr.expectation_config.type == "expect_table_row_count_to_be_between":
            count = _as_int(result.get("observed_value"))
        if count is not None:
            counts.append(count)
    return max(counts) if counts else None


def _outcome(evr: Any, table: str | None) -> ExpectationOutcome:
    config = evr.expectation_config
    expectation_type: str = config.type
    # The expectation object, not config.kwargs: GX leaves values equal to a field's default
    # (the custom expectations' fixed columns and queries) out of the kwargs.
    expectation = _domain_obj(config)
    kwargs = config.kwargs or {}
    column = getattr(expectation, "column", None) or kwargs.get("column")
    column_list = getattr(expectation, "column_list", None) or kwargs.get("column_list")
    if column is None and column_list:
        column = ",".join(str(c) for c in column_list)
    result: dict[str, Any] = dict(evr.result or {})
    from expectations.custom import exception_raised, exception_types

    raised = exception_raised(evr.exception_info)

    unexpected_count = _as_int(result.get("unexpected_count"))
    unexpected_percent = _as_float(result.get("unexpected_percent"))
    observed_value = result.get("observed_value")

    if raised:
        # The exception text may quote SQL or data, so only the type is named here.
        types = ", ".join(exception_types(evr.exception_info)) or "an exception"
        observed = f"error: {types} raised; the message is withheld (it may quote data)"
    elif unexpected_count is not None:
        observed = _map_observed(
            expectation_type,
            result,
            unexpected_count,
            unexpected_percent,
            multi_column=bool(column_list),
        )
    elif _as_int(observed_value) is not None:
        count = _as_int(observed_value)
        if _is_unexpected_rows(expectation, expectation_type):
            unexpected_count = count
            observed = f"{count} unexpected {_plural(count, 'row')}"
        elif expectation_type.startswith("expect_table_row_count"):
            observed = f"{count} {_plural(count, 'row')}"
        else:
            observed = f"observed {count}"
    elif isinstance(observed_value, float) and math.isfinite(observed_value):
        observed = f"observed {observed_value:g}"
    elif observed_value is None:
        observed = "no observed value"
    else:  # never echo non-numeric observed values: they could be data
        observed = "observed value withheld (non-numeric)"

    return ExpectationOutcome(
        expectation=expectation_type,
        column=column,
        success=bool(evr.success),
        observed=observed,
        unexpected_count=unexpected_count,
        unexpected_percent=unexpected_percent,
        table=table,
    )


def _domain_obj(config: Any) -> Any:
    try:
        return config.to_domain_obj()
    except Exception:  # pragma: no cover - an unregistered type: fall back to the kwargs
        logger.debug("cannot rebuild expectation %s", config.type, exc_info=True)
        return None


def _is_unexpected_rows(expectation: Any, expectation_type: str) -> bool:
    """An UnexpectedRowsExpectation or one of its subclasses (the cross-table checks)."""
    from great_expectations.expectations import UnexpectedRowsExpectation

    return isinstance(expectation, UnexpectedRowsExpectation) or (
        expectation_type == "unexpected_rows_expectation"
    )


def _map_observed(
    expectation_type: str,
    result: dict[str, Any],
    unexpected_count: int,
    unexpected_percent: float | None,
    *,
    multi_column: bool = False,
) -> str:
    """E.g. "2 of 3 non-null values unexpected (66.67%); 1 null of 4 rows"."""
    element_count = _as_int(result.get("element_count"))
    missing_count = _as_int(result.get("missing_count")) or 0
    pct = f" ({unexpected_percent:.2f}%)" if unexpected_percent is not None else ""
    if element_count is None:
        return f"{unexpected_count} unexpected{pct}"
    if expectation_type == "expect_column_values_to_not_be_null":
        return f"{unexpected_count} null of {element_count} {_plural(element_count, 'row')}{pct}"
    multi_column = multi_column or expectation_type.startswith(
        ("expect_compound_columns", "expect_multicolumn")
    )
    noun = "row" if multi_column else "non-null value"
    total = element_count - missing_count
    text = f"{unexpected_count} of {total} {_plural(total, noun)} unexpected{pct}"
    if missing_count:
        text += (
            f"; {missing_count} null of {element_count} {_plural(element_count, 'row')}"
        )
    return text


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else f"{noun}s"


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
