"""The publish gate: per-source suites and master-index suites, run as one GX checkpoint.

:func:`run_gate_suites` validates, with Great Expectations (GX) 1.x against PostgreSQL through
GX's SQL datasource and a file data context rooted at ``gx_dir``:

* one suite ``source.<name>`` per standardized source, on ``std.resident WHERE source = <name>``
  (a table asset on the source's view ``gate.source_<name>``, there while the gate runs; see
  :mod:`expectations.sources` for what it expects), and
* the master index: suite ``master_index.crosswalk`` on ``mpi.crosswalk`` and suite
  ``master_index.golden`` on ``mpi.golden`` (a GX suite validates one batch, so "the
  master_index suite" is these two, reported together as ``master_index``).

A source's suite also holds its deletions: the records it deleted since the last gate run that
passed, against ``max_deletion_share`` of the records it had (counted in the warehouse and
reported among the suite's outcomes; not part of the Data Docs).

All of them run in one checkpoint (``publish_gate``), so the static Data Docs under ``gx_dir``
are built once per run. It returns one PII-free :class:`ValidationSummary` per suite group
(:mod:`expectations.outcomes` reads them from GX's results):
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
    gx_dir/gx/uncommitted/data_docs/local_site/static/vendor/   the CDN assets (:mod:`expectations.offline_docs`)

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
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from expectations.offline_docs import make_site_offline
from expectations.outcomes import ExpectationOutcome, ValidationSummary, summarize_suite_group
from expectations.sources import (
    SOURCE_SUITE_PREFIX,
    GateRules,
    GateRulesError,
    MasterIndexRules,
    SourceRules,
    check_source_name,
    deletion_outcome,
    load_gate_rules,
    row_count_expectation,
    source_query,
    source_suite,
    source_suite_name,
    source_table_label,
)
from warehouse import validation

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
# table assets: both master-index tables are in one schema, the datasource's search path
MPI_SCHEMA = validation.CROSSWALK.schema
CROSSWALK_TABLE = validation.CROSSWALK.name
GOLDEN_TABLE = validation.GOLDEN.name
BATCH_DEFINITION_NAME = "whole_table"
DATA_DOCS_SITE_NAME = "local_site"
#: The Data Docs index lists the validation results of this many latest gate runs. Without a limit GX read every
#: result ever stored to build it, on every run: a gate a day adds about ten results, and with a year of them
#: (3,600) the index took 1.8 s to build instead of 0.5 s. Older results and their pages stay on disk
#: (``audit.validation_run`` keeps each run's outcome and the path of its pages).
DOCS_INDEX_RUNS = 30
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
    "precision_lost",  # stored as a number (Excel numeric cell, JSON number): its last digits are made up
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


def run_gate_suites(
    database_url: str,
    gx_dir: Path,
    *,
    sources: Sequence[str] = (),
    previous_row_counts: Mapping[str, int] | None = None,
    previous_master_count: int | None = None,
    rules: GateRules | None = None,
    today: dt.date | None = None,
    row_counts: Mapping[str, int] | None = None,
    deletions: Mapping[str, tuple[int, int, int]] | None = None,
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
    ``row_counts``: per source, its std.resident rows now, which set how far a share may fall
    below its minimum by chance (:func:`expectations.sources.tolerated_share`); None counts them
    in the warehouse. ``deletions``: per source, (records deleted since the last gate run that
    passed, records it had before, the most one earlier load deleted), checked against ``max_deletion_share`` as one more outcome
    of the source's suite (:func:`expectations.sources.deletion_outcome`); None checks none.

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
    rows = dict(row_counts) if row_counts is not None else (_count_rows(database_url) if names else {})

    gx = _import_gx()
    with _source_views(database_url, names), _gx_messages_withheld():
        result, context = _run_checkpoint(
            gx, database_url, gx_dir, names, previous_row_counts, previous_master_count, rules, today, rows
        )

    docs_index = _docs_index(context)
    if docs_index is not None:  # GX links its scripts, styles and fonts from CDNs: vendor them, rewrite the links
        try:
            make_site_offline(docs_index.parent)
        except OSError as exc:
            logger.warning("Data Docs left with CDN links (%s): re-run expectations.offline_docs.make_docs_offline",
                           type(exc).__name__)
    by_suite = {r.suite_name: r for r in result.run_results.values()}
    summaries = [
        summarize_suite_group(
            source_suite_name(name),
            [(by_suite.get(source_suite_name(name)), source_table_label(name))],
            docs_index,
        )
        for name in names
    ]
    summaries = [_with_deletions(s, name, (deletions or {}).get(name), rules)
                 for s, name in zip(summaries, names, strict=True)]
    summaries.append(
        summarize_suite_group(
            SUITE_NAME,
            [
                (by_suite.get(CROSSWALK_SUITE_NAME), validation.CROSSWALK.fullname),
                (by_suite.get(GOLDEN_SUITE_NAME), validation.GOLDEN.fullname),
            ],
            docs_index,
            row_count_table=validation.GOLDEN.fullname,
        )
    )
    return summaries


def _count_rows(database_url: str) -> dict[str, int]:
    """Standardized records per source, counted in the warehouse."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return validation.source_row_counts(conn)
    finally:
        engine.dispose()


@contextmanager
def _source_views(database_url: str, names: list[str]) -> Iterator[None]:
    """While the gate runs, each source's view, which its suite validates as a table
    (:func:`warehouse.validation.replace_source_views`); none left behind, so that a migration changing
    std.resident never finds a view depending on it. Without sources (the master-index suites alone) none is
    touched."""
    if not names:
        yield
        return
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            validation.replace_source_views(conn, {name: source_query(name) for name in names})
        try:
            yield
        finally:
            with engine.begin() as conn:
                validation.replace_source_views(conn, {})
    finally:
        engine.dispose()


def _with_deletions(summary: ValidationSummary, name: str, deletion: tuple[int, int, int] | None,
                    rules: GateRules) -> ValidationSummary:
    """``summary`` with the deletion check of source ``name`` among its outcomes (unchanged without one)."""
    if deletion is None:
        return summary
    deleted, before, most = deletion
    outcome = deletion_outcome(name, deleted, before, rules.for_source(name), most_before=most)
    return replace(summary, outcomes=[*summary.outcomes, outcome], evaluated=summary.evaluated + 1,
                   successful=summary.successful + outcome.success, failed=summary.failed + (not outcome.success),
                   success=summary.success and outcome.success)


def _run_checkpoint(
    gx: Any,
    database_url: str,
    gx_dir: Path,
    names: list[str],
    previous_row_counts: dict[str, int],
    previous_master_count: int | None,
    rules: GateRules,
    today: dt.date,
    rows: Mapping[str, int],
) -> tuple[Any, FileDataContext]:
    """Create or update the datasource, suites, validation definitions and checkpoint; run it."""
    context = gx.get_context(
        mode="file",
        project_root_dir=str(gx_dir),
        runtime_environment={URL_CONFIG_VARIABLE: database_url},
    )
    _quiet_context(context, docs_index_results=DOCS_INDEX_RUNS * (len(names) + 2))

    datasource = context.data_sources.add_or_update_postgres(
        name=DATASOURCE_NAME,
        connection_string="${" + URL_CONFIG_VARIABLE + "}",
        # The mpi tables are table assets in schema "mpi". GX 1.14+ deprecates
        # TableAsset.schema_name in favour of putting the schema in the connection, so set the
        # search_path (with the sources' views); the cross-table checks name their schemas.
        kwargs={"connect_args": {"options": f"-c search_path={MPI_SCHEMA},{validation.SOURCE_VIEW_SCHEMA}"}},
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
                        row_count=rows.get(name),
                        today=today,
                    ),
                    _whole_table_batch(datasource, validation.source_view_name(name),
                                       asset=source_suite_name(name)),
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


def _quiet_context(context: FileDataContext, *, docs_index_results: int) -> None:
    """Turn off progress bars and analytics, list the latest ``docs_index_results`` validation results in the Data
    Docs index, and name no config-variables file (saved when changed): the gate's one variable, the database URL,
    is in memory, and GX parsed that file for each value it looked up (≈ 460 times a run)."""
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
    sites = variables.data_docs_sites or {}
    site = sites.get(DATA_DOCS_SITE_NAME)
    if site is not None:
        index = site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
        if index.get("validation_results_limit") != docs_index_results:
            index["validation_results_limit"] = docs_index_results
            variables.data_docs_sites = sites
            changed = True
    if variables.config_variables_file_path is not None:
        variables.config_variables_file_path = None
        changed = True
    if changed:
        variables.save()


def _whole_table_batch(datasource: Any, table: str, *, asset: str | None = None) -> BatchDefinition:
    """Get or create the table asset ``asset`` (default: named as ``table``) on ``table`` and its whole-table batch
    definition; an asset of that name on another table, or a query asset, is replaced."""
    name = asset or table
    try:
        found = datasource.get_asset(name)
    except LookupError:
        found = None
    if found is not None and getattr(found, "table_name", None) != table:
        datasource.delete_asset(name)
        found = None
    if found is None:
        found = datasource.add_table_asset(name=name, table_name=table)
    try:
        return found.get_batch_definition(BATCH_DEFINITION_NAME)
    except KeyError:
        return found.add_batch_definition_whole_table(BATCH_DEFINITION_NAME)


def _crosswalk_suite(gx: Any) -> ExpectationSuite:
    from expectations.custom import (
        ExpectCrosswalkMasterIdsToHaveGoldenRecord,
        ExpectCrosswalkRecordsToBeInStd,
        ExpectMastersToHoldOneValidIdNumber,
        ExpectStdRecordsToBeInCrosswalk,
    )

    gxe = gx.expectations
    return gx.ExpectationSuite(
        name=CROSSWALK_SUITE_NAME,
        meta={"notes": "mpi.crosswalk: source record -> master_id links"},
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column="master_id"),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["source", "source_record_id"]),
            gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=None),
            ExpectStdRecordsToBeInCrosswalk(),
            ExpectCrosswalkRecordsToBeInStd(),
            ExpectCrosswalkMasterIdsToHaveGoldenRecord(),
            ExpectMastersToHoldOneValidIdNumber(),
        ],
    )


def _golden_suite(
    gx: Any, rules: MasterIndexRules, previous_master_count: int | None
) -> ExpectationSuite:
    from expectations.custom import (
        ExpectBirthDateAndSexToAgreeWithCnRic,
        ExpectColumnValuesToBeValidCnRic,
    )

    gxe = gx.expectations
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
    return gx.ExpectationSuite(name=GOLDEN_SUITE_NAME, meta={"notes": "mpi.golden: one golden record per master_id"},
                               expectations=expectations)


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
