"""The publish gate: per-source suites and master-index suites, run as one GX checkpoint.

:func:`run_gate_suites` validates, with Great Expectations (GX) 1.x against PostgreSQL through
GX's SQL datasource and a file data context rooted at ``gx_dir``:

* one suite ``source.<name>`` per standardized source, on ``std.resident WHERE source = <name>``
  (a query asset; see :mod:`expectations.sources` for what it expects), and
* the master index: suite ``master_index.crosswalk`` on ``mpi.crosswalk`` and suite
  ``master_index.golden`` on ``mpi.golden`` (a GX suite validates one batch, so "the
  master_index suite" is these two, reported together as ``master_index``).

All of them run in one checkpoint (``publish_gate``), so the static Data Docs under ``gx_dir``
are built once per run. It returns one PII-free :class:`ValidationSummary` per suite group:
``source.<name>`` for each source, then ``master_index``. Thresholds come from
``expectations/gate_rules.yaml`` (:func:`load_gate_rules`).

What the master-index suites expect:

* ``mpi.crosswalk``: master_id not null; (source, source_record_id) unique; at least one row;
  every std.resident record has a crosswalk row and every crosswalk row a std.resident record
  (with the uniqueness: every record exactly once); every master_id used has a golden record;
  no master holds two different valid ID numbers (``mpi.match_feature.id_valid``);
* ``mpi.golden``: master_id unique; id_number of GB 11643 shape, with a valid check character,
  unique; id_number_status and sex in their code sets; record_count between 1 and
  ``max_cluster_size``; birth date and sex agree with the ID number; the number of masters
  within ``max_master_count_change`` of the previous release's, when that count is given.

Layout under ``gx_dir`` (standard GX file context, ``project_root_dir=gx_dir``)::

    gx_dir/gx/great_expectations.yml          datasource "hub_warehouse" (URL not stored, see below)
    gx_dir/gx/expectations/*.json             suites source.<name>, master_index.crosswalk/.golden
    gx_dir/gx/validation_definitions/*.json
    gx_dir/gx/checkpoints/publish_gate.json
    gx_dir/gx/uncommitted/validations/...      one result JSON per run and suite
    gx_dir/gx/uncommitted/data_docs/local_site/index.html

PII: the checkpoint uses :data:`PII_SAFE_RESULT_FORMAT`, so results, the stored validation
JSON and the Data Docs carry counts and percentages only, never column values; the
cross-table checks select key columns only and report a row count; exception texts (which
can quote values) are replaced by the exception's type before anything is stored or rendered,
and GX's own warnings and errors are withheld from the log while the gate runs.
The database URL (which may hold a password) is never written to ``gx_dir``: the datasource
stores the placeholder ``${HUB_GX_MPI_DATABASE_URL}`` and the real URL is handed to GX in
memory as a runtime config variable. Engines are disposed after the run.

Great Expectations is imported lazily, inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from expectations.sources import (
    SOURCE_SUITE_PREFIX,
    GateRules,
    GateRulesError,
    MasterIndexRules,
    SourceRules,
    check_source_name,
    load_gate_rules,
    row_count_expectation,
    source_query,
    source_suite,
    source_suite_name,
    source_table_label,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import FileDataContext

__all__ = [
    "CHECKPOINT_NAME",
    "CROSSWALK_SUITE_NAME",
    "DATASOURCE_NAME",
    "GOLDEN_SUITE_NAME",
    "ID_NUMBER_REGEX",
    "ID_NUMBER_STATUSES",
    "PII_SAFE_RESULT_FORMAT",
    "SEX_CODES",
    "SOURCE_SUITE_PREFIX",
    "SUITE_NAME",
    "ExpectationOutcome",
    "GateRules",
    "GateRulesError",
    "MasterIndexRules",
    "SourceRules",
    "ValidationSummary",
    "load_gate_rules",
    "run_gate_suites",
    "validate_master_index",
]

logger = logging.getLogger(__name__)

SUITE_NAME = "master_index"
CHECKPOINT_NAME = "publish_gate"
CROSSWALK_SUITE_NAME = f"{SUITE_NAME}.crosswalk"
GOLDEN_SUITE_NAME = f"{SUITE_NAME}.golden"
DATASOURCE_NAME = "hub_warehouse"
MPI_SCHEMA = "mpi"
CROSSWALK_TABLE = "crosswalk"
GOLDEN_TABLE = "golden"
BATCH_DEFINITION_NAME = "whole_table"
DATA_DOCS_SITE_NAME = "local_site"
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


def run_gate_suites(
    database_url: str,
    gx_dir: Path,
    *,
    sources: Sequence[str] = (),
    previous_row_counts: Mapping[str, int] | None = None,
    previous_master_count: int | None = None,
    rules: GateRules | None = None,
    today: dt.date | None = None,
) -> list[ValidationSummary]:
    """Run the source suites and the master-index suites in one GX checkpoint; build Data Docs.

    ``database_url`` is a SQLAlchemy URL, TCP (``postgresql+psycopg2://u@host:5432/db``) or
    UNIX socket (``postgresql+psycopg2://u@/db?host=/path/to/socket/dir``). ``gx_dir`` is
    created if needed and may be reused across calls: the datasource, assets, suites,
    validation definitions and checkpoint are created or updated in place.

    ``sources``: the sources to validate, each by its suite ``source.<name>``.
    ``previous_row_counts``: per source, its row count at the last load; a source without an
    entry gets no row-count check. ``previous_master_count``: the masters in the previous
    release; None skips the master-count check. ``rules``: the thresholds (default:
    :func:`load_gate_rules`). ``today`` bounds birth dates (default: the current date).

    Returns one summary per source, in the order given, then ``master_index``. Validation
    failures are reported in the summaries, not raised; a database that cannot be reached
    raises GX's connection error.
    """
    if isinstance(sources, str):
        raise TypeError("sources must be a list of source names, not one string")
    names = list(dict.fromkeys(check_source_name(n) for n in sources))
    previous_row_counts = dict(previous_row_counts or {})
    for name, count in previous_row_counts.items():
        _check_count(f"previous_row_counts[{name!r}]", count)
    if previous_master_count is not None:
        _check_count("previous_master_count", previous_master_count)
    rules = rules if rules is not None else load_gate_rules()
    today = today or dt.date.today()
    gx_dir = Path(gx_dir)
    gx_dir.mkdir(parents=True, exist_ok=True)

    gx = _import_gx()
    with _gx_messages_withheld():
        result, context = _run_checkpoint(
            gx, database_url, gx_dir, names, previous_row_counts, previous_master_count, rules, today
        )

    docs_index = _docs_index(context)
    by_suite = {r.suite_name: r for r in result.run_results.values()}
    summaries = [
        _summary(
            source_suite_name(name),
            [(by_suite.get(source_suite_name(name)), source_table_label(name))],
            docs_index,
        )
        for name in names
    ]
    summaries.append(
        _summary(
            SUITE_NAME,
            [
                (by_suite.get(CROSSWALK_SUITE_NAME), f"{MPI_SCHEMA}.{CROSSWALK_TABLE}"),
                (by_suite.get(GOLDEN_SUITE_NAME), f"{MPI_SCHEMA}.{GOLDEN_TABLE}"),
            ],
            docs_index,
            row_count_table=f"{MPI_SCHEMA}.{GOLDEN_TABLE}",
        )
    )
    return summaries


def _run_checkpoint(
    gx: Any,
    database_url: str,
    gx_dir: Path,
    names: list[str],
    previous_row_counts: dict[str, int],
    previous_master_count: int | None,
    rules: GateRules,
    today: dt.date,
) -> tuple[Any, FileDataContext]:
    """Create or update the datasource, suites, validation definitions and checkpoint; run it."""
    context = gx.get_context(
        mode="file",
        project_root_dir=str(gx_dir),
        runtime_environment={URL_CONFIG_VARIABLE: database_url},
    )
    _quiet_context(context)

    datasource = context.data_sources.add_or_update_postgres(
        name=DATASOURCE_NAME,
        connection_string="${" + URL_CONFIG_VARIABLE + "}",
        # The mpi tables are table assets in schema "mpi". GX 1.14+ deprecates
        # TableAsset.schema_name in favour of putting the schema in the connection, so set the
        # search_path; the source queries and cross-table checks name their schemas.
        kwargs={"connect_args": {"options": f"-c search_path={MPI_SCHEMA}"}},
    )
    try:
        planned: list[tuple[ExpectationSuite, BatchDefinition]] = []
        for name in names:
            planned.append(
                (
                    source_suite(
                        gx,
                        name,
                        rules.for_source(name),
                        previous_row_count=previous_row_counts.get(name),
                        today=today,
                    ),
                    _query_batch(datasource, source_suite_name(name), source_query(name)),
                )
            )
        planned.append((_crosswalk_suite(gx), _whole_table_batch(datasource, CROSSWALK_TABLE)))
        planned.append(
            (
                _golden_suite(gx, rules.master_index, previous_master_count),
                _whole_table_batch(datasource, GOLDEN_TABLE),
            )
        )
        definitions = []
        for suite, batch_definition in planned:
            suite = context.suites.add_or_update(suite)
            definitions.append(
                context.validation_definitions.add_or_update(
                    gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=suite)
                )
            )
        from expectations.custom import PiiSafeUpdateDataDocsAction

        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=CHECKPOINT_NAME,
                validation_definitions=definitions,
                actions=[
                    PiiSafeUpdateDataDocsAction(
                        name="update_data_docs", site_names=[DATA_DOCS_SITE_NAME]
                    )
                ],
                result_format=dict(PII_SAFE_RESULT_FORMAT),
            )
        )
        result = checkpoint.run()
    finally:
        _dispose_engines(datasource)
    return result, context


def validate_master_index(
    database_url: str,
    gx_dir: Path,
    *,
    max_cluster_size: int | None = None,
    previous_master_count: int | None = None,
    rules: GateRules | None = None,
) -> ValidationSummary:
    """Run the master-index suites only (:func:`run_gate_suites` without sources).

    ``max_cluster_size`` overrides the rules' ``master_index.max_cluster_size``.
    """
    rules = rules if rules is not None else load_gate_rules()
    if max_cluster_size is not None:
        if isinstance(max_cluster_size, bool) or not isinstance(max_cluster_size, int) or max_cluster_size < 1:
            raise ValueError("max_cluster_size must be an integer >= 1")
        rules = GateRules(
            defaults=rules.defaults,
            master_index=MasterIndexRules(
                max_cluster_size=max_cluster_size,
                max_master_count_change=rules.master_index.max_master_count_change,
            ),
            overrides=rules.overrides,
            path=rules.path,
        )
    (summary,) = run_gate_suites(
        database_url, gx_dir, previous_master_count=previous_master_count, rules=rules
    )
    return summary


def _check_count(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")


# --------------------------------------------------------------------------- GX plumbing


class _WithholdGxMessages(logging.Filter):
    """Replace GX's warnings and errors by a fixed text: GX logs exception messages (a database
    error quotes the value it failed on) and they would reach the Airflow task log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            record.msg = "GX %s from %s withheld: its messages can quote data (see the gate's outcomes)"
            record.args = (record.levelname.lower(), record.name)
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


@contextmanager
def _gx_messages_withheld() -> Iterator[None]:
    """While the gate runs, every GX logger's warnings and errors are withheld (see above)."""
    withhold = _WithholdGxMessages()
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name == "great_expectations" or name.startswith("great_expectations.")
    ]
    loggers = [logging.getLogger(name) for name in names]
    for gx_logger in loggers:
        gx_logger.addFilter(withhold)
    try:
        yield
    finally:
        for gx_logger in loggers:
            gx_logger.removeFilter(withhold)



def _import_gx():
    """Import GX (and register the custom expectations) with its noise turned down."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    # Register the custom expectations and the Data Docs action before any suite or
    # checkpoint containing them is loaded.
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


def _query_batch(datasource: Any, name: str, query: str) -> BatchDefinition:
    """Get or create the query asset ``name`` (re-created when its query changed)."""
    try:
        asset = datasource.get_asset(name)
    except LookupError:
        asset = None
    if asset is not None and getattr(asset, "query", None) != query:
        datasource.delete_asset(name)
        asset = None
    if asset is None:
        asset = datasource.add_query_asset(name=name, query=query)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION_NAME)
    except KeyError:
        return asset.add_batch_definition_whole_table(BATCH_DEFINITION_NAME)


def _crosswalk_suite(gx: Any) -> ExpectationSuite:
    from expectations.custom import (
        ExpectCrosswalkMasterIdsToHaveGoldenRecord,
        ExpectCrosswalkRecordsToBeInStd,
        ExpectMastersToHoldOneValidIdNumber,
        ExpectStdRecordsToBeInCrosswalk,
    )

    gxe = gx.expectations
    suite = gx.ExpectationSuite(
        name=CROSSWALK_SUITE_NAME,
        meta={"notes": "mpi.crosswalk: source record -> master_id links"},
    )
    for expectation in (
        gxe.ExpectColumnValuesToNotBeNull(column="master_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["source", "source_record_id"]),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=None),
        ExpectStdRecordsToBeInCrosswalk(),
        ExpectCrosswalkRecordsToBeInStd(),
        ExpectCrosswalkMasterIdsToHaveGoldenRecord(),
        ExpectMastersToHoldOneValidIdNumber(),
    ):
        suite.add_expectation(expectation)
    return suite


def _golden_suite(
    gx: Any, rules: MasterIndexRules, previous_master_count: int | None
) -> ExpectationSuite:
    from expectations.custom import (
        ExpectBirthDateAndSexToAgreeWithCnRic,
        ExpectColumnValuesToBeValidCnRic,
    )

    gxe = gx.expectations
    suite = gx.ExpectationSuite(
        name=GOLDEN_SUITE_NAME,
        meta={"notes": "mpi.golden: one golden record per master_id"},
    )
    expectations = [
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
            column="record_count", min_value=1, max_value=rules.max_cluster_size
        ),
        ExpectBirthDateAndSexToAgreeWithCnRic(column_list=["id_number", "birth_date", "sex"]),
    ]
    if previous_master_count is not None:
        expectations.append(row_count_expectation(previous_master_count, rules.max_master_count_change,
                                                  noun="masters", reference="the previous release's"))
    for expectation in expectations:
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


def _summary(
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
