"""Quality gate for the master person index (``mpi.crosswalk`` / ``mpi.golden``).

:func:`validate_master_index` runs the ``master_index`` checkpoint with Great Expectations
(GX) 1.x against PostgreSQL through GX's SQL datasource, using a file data context rooted
at ``gx_dir``. It returns a PII-free :class:`ValidationSummary` and leaves static Data Docs
under ``gx_dir``.

Layout under ``gx_dir`` (standard GX file context, ``project_root_dir=gx_dir``)::

    gx_dir/gx/great_expectations.yml          datasource "hub_mpi" (URL not stored, see below)
    gx_dir/gx/expectations/*.json             suites master_index.crosswalk / master_index.golden
    gx_dir/gx/validation_definitions/*.json
    gx_dir/gx/checkpoints/master_index.json
    gx_dir/gx/uncommitted/validations/...      one result JSON per run and table
    gx_dir/gx/uncommitted/data_docs/local_site/index.html

A GX suite validates one batch (one table), so "the master_index suite" is two GX suites
(``master_index.crosswalk`` and ``master_index.golden``) run together by one checkpoint
named ``master_index``; :attr:`ValidationSummary.suite` is ``"master_index"``.

PII: the checkpoint uses :data:`PII_SAFE_RESULT_FORMAT`, so results, the stored validation
JSON and the Data Docs carry counts and percentages only, never column values; the
cross-table check selects key columns only and reports a row count. The database URL
(which may hold a password) is never written to ``gx_dir``: the datasource stores the
placeholder ``${HUB_GX_MPI_DATABASE_URL}`` and the real URL is handed to GX in memory as a
runtime config variable.

Great Expectations is imported lazily, inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:  # pragma: no cover - typing only
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import FileDataContext

__all__ = [
    "CHECKPOINT_NAME",
    "CROSSWALK_SUITE_NAME",
    "DATASOURCE_NAME",
    "DEFAULT_MAX_CLUSTER_SIZE",
    "GOLDEN_SUITE_NAME",
    "ID_NUMBER_REGEX",
    "ID_NUMBER_STATUSES",
    "PII_SAFE_RESULT_FORMAT",
    "SEX_CODES",
    "SUITE_NAME",
    "ExpectationOutcome",
    "ValidationSummary",
    "validate_master_index",
]

logger = logging.getLogger(__name__)

SUITE_NAME = "master_index"
CHECKPOINT_NAME = SUITE_NAME
CROSSWALK_SUITE_NAME = f"{SUITE_NAME}.crosswalk"
GOLDEN_SUITE_NAME = f"{SUITE_NAME}.golden"
DATASOURCE_NAME = "hub_mpi"
MPI_SCHEMA = "mpi"
CROSSWALK_TABLE = "crosswalk"
GOLDEN_TABLE = "golden"
BATCH_DEFINITION_NAME = "whole_table"
DATA_DOCS_SITE_NAME = "local_site"
DEFAULT_MAX_CLUSTER_SIZE = 20

#: Config variable through which the database URL reaches GX (runtime only, never on disk).
URL_CONFIG_VARIABLE = "HUB_GX_MPI_DATABASE_URL"

ID_NUMBER_REGEX = r"^[0-9]{17}[0-9X]$"
ID_NUMBER_STATUSES: tuple[str, ...] = (
    "valid",
    "upgraded_from_15",
    "checksum_error",
    "bad_region",
    "bad_date",
    "placeholder",
    "malformed",
    "missing",
    "id_name_conflict",  # golden only: a valid ID number whose records name someone else
)
#: GB/T 2261.1-2003 sex codes.
SEX_CODES: tuple[int, ...] = (0, 1, 2, 9)

#: Counts and percentages only: no unexpected values, no partial lists, no index query.
#: (UnexpectedRowsExpectation returns only its row count below COMPLETE.)
PII_SAFE_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "exclude_unexpected_values": True,
    "partial_unexpected_count": 0,
    "return_unexpected_index_query": False,
    "include_unexpected_rows": False,
}

# Cross-table referential check: every crosswalk row's master_id exists in mpi.golden.
# Selects key columns only. The JOIN form is deliberate: GX substitutes {batch} with the
# bare table for table assets and, for queries containing a JOIN, with an un-aliased
# "(subquery)", so "{batch} AS c" is valid SQL in both cases.
ORPHAN_CROSSWALK_QUERY = (
    "SELECT c.source, c.source_record_id FROM {batch} AS c "
    f"LEFT JOIN {MPI_SCHEMA}.{GOLDEN_TABLE} AS g ON g.master_id = c.master_id "
    "WHERE c.master_id IS NOT NULL AND g.master_id IS NULL"
)


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, free of personal data.

    ``expectation`` is the GX expectation type (``"expect_column_values_to_not_be_null"``,
    ``"unexpected_rows_expectation"`` for the cross-table check). ``column`` is the column,
    ``"a,b"`` for compound-column checks and None for table-level checks. ``observed`` is
    short text made from counts and percentages only. ``unexpected_percent`` is GX's
    percentage of non-null values (None where GX reports none). ``table`` is the
    schema-qualified table the expectation ran on (``"mpi.golden"``).
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
    """Outcome of one :func:`validate_master_index` run."""

    suite: str
    success: bool
    evaluated: int
    successful: int
    failed: int
    outcomes: list[ExpectationOutcome]
    docs_index: Path | None  # the Data Docs index.html


def validate_master_index(
    database_url: str, gx_dir: Path, *, max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE
) -> ValidationSummary:
    """Run the master-index suite through GX's SQL (PostgreSQL) datasource and build Data Docs under gx_dir.

    ``database_url`` is a SQLAlchemy URL, TCP (``postgresql+psycopg2://u@host:5432/db``) or
    UNIX socket (``postgresql+psycopg2://u@/db?host=/path/to/socket/dir``). ``gx_dir`` is
    created if needed and may be reused across calls: the datasource, suites, validation
    definitions and checkpoint are created or updated in place (so a changed
    ``max_cluster_size`` takes effect). Validation failures are reported in the summary,
    not raised; a database that cannot be reached raises GX's connection error.
    """
    if max_cluster_size < 1:
        raise ValueError("max_cluster_size must be >= 1")
    gx_dir = Path(gx_dir)
    gx_dir.mkdir(parents=True, exist_ok=True)

    gx = _import_gx()
    context = gx.get_context(
        mode="file",
        project_root_dir=str(gx_dir),
        runtime_environment={URL_CONFIG_VARIABLE: database_url},
    )
    _quiet_context(context)

    datasource = context.data_sources.add_or_update_postgres(
        name=DATASOURCE_NAME,
        connection_string="${" + URL_CONFIG_VARIABLE + "}",
        # The tables live in schema "mpi". GX 1.14+ deprecates TableAsset.schema_name in
        # favour of putting the schema in the connection, so set the search_path.
        kwargs={"connect_args": {"options": f"-c search_path={MPI_SCHEMA}"}},
    )
    try:
        crosswalk_bd = _whole_table_batch(datasource, CROSSWALK_TABLE)
        golden_bd = _whole_table_batch(datasource, GOLDEN_TABLE)

        crosswalk_suite = context.suites.add_or_update(_crosswalk_suite(gx))
        golden_suite = context.suites.add_or_update(_golden_suite(gx, max_cluster_size))

        definitions = [
            context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=suite.name, data=bd, suite=suite)
            )
            for suite, bd in (
                (crosswalk_suite, crosswalk_bd),
                (golden_suite, golden_bd),
            )
        ]
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=CHECKPOINT_NAME,
                validation_definitions=definitions,
                actions=[
                    gx.checkpoint.UpdateDataDocsAction(
                        name="update_data_docs", site_names=[DATA_DOCS_SITE_NAME]
                    )
                ],
                result_format=dict(PII_SAFE_RESULT_FORMAT),
            )
        )
        result = checkpoint.run()
    finally:
        _dispose_engines(datasource)

    outcomes = _outcomes(result)
    successful = sum(1 for o in outcomes if o.success)
    return ValidationSummary(
        suite=SUITE_NAME,
        success=bool(result.success) and successful == len(outcomes),
        evaluated=len(outcomes),
        successful=successful,
        failed=len(outcomes) - successful,
        outcomes=outcomes,
        docs_index=_docs_index(context),
    )


# --------------------------------------------------------------------------- GX plumbing


def _import_gx():
    """Import GX (and register the custom expectations) with its noise turned down."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    # Register ExpectColumnValuesToBeValidCnRic before any suite containing it is loaded.
    import expectations.custom  # noqa: F401

    return gx


def _quiet_context(context: FileDataContext) -> None:
    """Turn off progress bars and analytics in the context's config (saved once)."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    variables = context.variables
    bars = variables.progress_bars
    if isinstance(bars, dict):  # a reloaded file context hands back the raw mapping
        bars = ProgressBarsConfig(**bars)
    changed = False
    if bars is None or bars.globally or bars.metric_calculations:
        variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        changed = True
    if variables.analytics_enabled is not False:
        context.config.analytics_enabled = False
        changed = True
    if changed:
        variables.save()


def _whole_table_batch(datasource: Any, table: str) -> BatchDefinition:
    """Get or create the table asset ``table`` and its whole-table batch definition."""
    try:
        asset = datasource.get_asset(table)
    except LookupError:
        asset = datasource.add_table_asset(name=table, table_name=table)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION_NAME)
    except KeyError:
        return asset.add_batch_definition_whole_table(BATCH_DEFINITION_NAME)


def _crosswalk_suite(gx: Any) -> ExpectationSuite:
    gxe = gx.expectations
    suite = gx.ExpectationSuite(
        name=CROSSWALK_SUITE_NAME,
        meta={"notes": "mpi.crosswalk: source record -> master_id links"},
    )
    for expectation in (
        gxe.ExpectColumnValuesToNotBeNull(column="master_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["source", "source_record_id"]),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=None),
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=ORPHAN_CROSSWALK_QUERY,
            description="every crosswalk master_id exists in mpi.golden",
        ),
    ):
        suite.add_expectation(expectation)
    return suite


def _golden_suite(gx: Any, max_cluster_size: int) -> ExpectationSuite:
    from expectations.custom import ExpectColumnValuesToBeValidCnRic

    gxe = gx.expectations
    suite = gx.ExpectationSuite(
        name=GOLDEN_SUITE_NAME,
        meta={"notes": "mpi.golden: one golden record per master_id"},
    )
    for expectation in (
        gxe.ExpectColumnValuesToBeUnique(column="master_id"),
        gxe.ExpectColumnValuesToMatchRegex(column="id_number", regex=ID_NUMBER_REGEX),
        ExpectColumnValuesToBeValidCnRic(column="id_number"),
        # Column map expectations skip NULLs, so this is "no two masters share a valid ID".
        gxe.ExpectColumnValuesToBeUnique(column="id_number"),
        gxe.ExpectColumnValuesToBeInSet(
            column="id_number_status", value_set=list(ID_NUMBER_STATUSES)
        ),
        gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=list(SEX_CODES)),
        gxe.ExpectColumnValuesToBeBetween(
            column="record_count", min_value=1, max_value=max_cluster_size
        ),
    ):
        suite.add_expectation(expectation)
    return suite


def _dispose_engines(datasource: Any) -> None:
    """Close pooled connections so the database can be dropped/recreated right after."""
    engines = [getattr(datasource, "_engine", None)]
    execution_engine = getattr(datasource, "_execution_engine", None)
    engines.append(getattr(execution_engine, "engine", None))
    for engine in engines:
        if engine is None:
            continue
        try:
            engine.dispose()
        except Exception:  # pragma: no cover - best effort
            logger.debug("engine dispose failed", exc_info=True)


def _docs_index(context: FileDataContext) -> Path | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sites = context.get_docs_sites_urls(site_name=DATA_DOCS_SITE_NAME)
        except Exception:  # pragma: no cover - fall back to the default layout
            logger.debug("get_docs_sites_urls failed", exc_info=True)
            sites = []
    for site in sites:
        url = site.get("site_url") or ""
        if url.startswith("file://"):
            path = Path(unquote(urlparse(url).path))
            if path.is_file():
                return path
    fallback = (
        Path(context.root_directory) / "uncommitted" / "data_docs" / DATA_DOCS_SITE_NAME
    ) / "index.html"
    return fallback if fallback.is_file() else None


# --------------------------------------------------------------------------- results


def _outcomes(checkpoint_result: Any) -> list[ExpectationOutcome]:
    tables = {
        CROSSWALK_SUITE_NAME: f"{MPI_SCHEMA}.{CROSSWALK_TABLE}",
        GOLDEN_SUITE_NAME: f"{MPI_SCHEMA}.{GOLDEN_TABLE}",
    }
    outcomes: list[ExpectationOutcome] = []
    for suite_result in checkpoint_result.run_results.values():
        table = tables.get(suite_result.suite_name)
        for evr in suite_result.results:
            outcomes.append(_outcome(evr, table))
    return outcomes


def _outcome(evr: Any, table: str | None) -> ExpectationOutcome:
    config = evr.expectation_config
    expectation_type: str = config.type
    kwargs = config.kwargs or {}
    column = kwargs.get("column")
    if column is None and kwargs.get("column_list"):
        column = ",".join(str(c) for c in kwargs["column_list"])
    result: dict[str, Any] = dict(evr.result or {})
    exception_info = evr.exception_info or {}
    raised = isinstance(exception_info, dict) and bool(
        exception_info.get("raised_exception")
    )

    unexpected_count = _as_int(result.get("unexpected_count"))
    unexpected_percent = _as_float(result.get("unexpected_percent"))
    observed_value = result.get("observed_value")

    if raised:
        # The exception text may quote SQL or data, so it is not copied here.
        observed = (
            "error: the expectation raised an exception (see the GX validation result)"
        )
    elif unexpected_count is not None:
        observed = _map_observed(
            expectation_type, result, unexpected_count, unexpected_percent
        )
    elif _as_int(observed_value) is not None:
        count = _as_int(observed_value)
        if expectation_type == "unexpected_rows_expectation":
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


def _map_observed(
    expectation_type: str,
    result: dict[str, Any],
    unexpected_count: int,
    unexpected_percent: float | None,
) -> str:
    """E.g. "2 of 3 non-null values unexpected (66.67%); 1 null of 4 rows"."""
    element_count = _as_int(result.get("element_count"))
    missing_count = _as_int(result.get("missing_count")) or 0
    pct = f" ({unexpected_percent:.2f}%)" if unexpected_percent is not None else ""
    if element_count is None:
        return f"{unexpected_count} unexpected{pct}"
    if expectation_type == "expect_column_values_to_not_be_null":
        return f"{unexpected_count} null of {element_count} {_plural(element_count, 'row')}{pct}"
    multi_column = expectation_type.startswith(
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
