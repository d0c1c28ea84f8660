"""The pipeline steps. The DAGs and the CLI call these same functions; there is no second path.

Each step takes and returns small summaries (counts, ids), never personal data, so its result
can travel through XCom and logs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict

from connectors.registry import Source, get_source, load_registry
from connectors.rest import Endpoint, ExtractError, Page, fetch_pages
from hub import settings
from hub.errors import GateFailed
from warehouse.landing import LoadCounts, LoadIdentityError, close_batch, land_records, open_batch

log = logging.getLogger("hub.pipeline")


def prepare_warehouse() -> str:
    """Create or upgrade the warehouse layers; returns the schema revision."""
    from warehouse.migrate import upgrade

    return upgrade(settings.engine())


def source_names() -> list[str]:
    return sorted(load_registry())


def ingest_source(name: str, endpoint: Endpoint | None = None,
                  on_page: Callable[[Page, LoadCounts], None] | None = None) -> dict:
    """Extract every record of source ``name`` and land it in raw, as one load batch.

    The batch commits whole or not at all; a failed batch is recorded with its error.
    """
    from hub.connections import endpoint_from_env

    source: Source = get_source(name)
    endpoint = endpoint or endpoint_from_env(source.conn_id)
    eng = settings.engine()
    with eng.begin() as conn:
        batch_id = open_batch(conn, name)
    counts = LoadCounts()
    try:
        with eng.begin() as conn:
            fetched_at = dt.datetime.now(dt.UTC)
            for page in fetch_pages(endpoint, source.resource, source=name, page_size=source.pagination.page_size):
                page_counts = land_records(conn, source=name, batch_id=batch_id, records=page.records,
                                           primary_key=source.primary_key, fetched_at=fetched_at)
                counts.add(page_counts)
                log.info("%s page %d: received %d, landed %d, quarantined %d, duplicates %d (total %d of %d)",
                         name, page.number, page_counts.received, page_counts.landed, page_counts.quarantined,
                         page_counts.duplicates, counts.received, page.total)
                if on_page:
                    on_page(page, page_counts)
            counts.check(name)
            close_batch(conn, batch_id, counts, "succeeded")
    except Exception as exc:
        # messages of our own errors name source and page only; others are reduced to their type
        reason = str(exc) if isinstance(exc, ExtractError | LoadIdentityError) else type(exc).__name__
        with eng.begin() as conn:
            close_batch(conn, batch_id, LoadCounts(), "failed", reason[:2000])
        raise
    log.info("%s: batch %d received %d, landed %d, quarantined %d, duplicates %d", name, batch_id,
             counts.received, counts.landed, counts.quarantined, counts.duplicates)
    return {"source": name, "batch_id": batch_id, **asdict(counts)}


def standardize_sources(names: list[str] | None = None) -> dict:
    """Rebuild std.resident from raw for each source (all registered sources by default)."""
    from schemas.resident import standardize_frame
    from warehouse.standardized import latest_raw, replace_source

    result: dict[str, dict] = {}
    with settings.engine().begin() as conn:
        for name in names or source_names():
            source = get_source(name)
            raw = latest_raw(conn, name, source.mapping)
            std = standardize_frame(raw)
            std["program"] = source.program
            written = replace_source(conn, name, std)
            statuses = std["id_number_status"].value_counts().to_dict() if written else {}
            result[name] = {"records": written, "id_number_status": {k: int(v) for k, v in statuses.items()}}
            log.info("%s: standardized %d records; ID number statuses %s", name, written, result[name]["id_number_status"])
    return result


def build_master_index() -> dict:
    """Match standardized records into master ids and rebuild the golden records."""
    from mpi.exact import exact_id_anchors
    from warehouse.master_index import rebuild_golden, write_crosswalk
    from warehouse.standardized import read_for_matching

    with settings.engine().begin() as conn:
        records = read_for_matching(conn)
        anchors = exact_id_anchors(records)
        counts = write_crosswalk(conn, anchors)
        counts["masters"] = rebuild_golden(conn)
        counts["records"] = len(records)
        counts["linked_by_exact_id"] = int((anchors["match_rule"] == "exact_id").sum())
    log.info("master index: %s", counts)
    return counts


def run_gate() -> dict:
    """Validate the master index; record the run; raise :class:`GateFailed` if any expectation fails."""
    from expectations.gate import validate_master_index
    from warehouse.audit import record_validation
    from warehouse.releases import record_blocked

    summary = validate_master_index(settings.database_url(), settings.gx_dir())
    outcomes = [asdict(o) for o in summary.outcomes]
    with settings.engine().begin() as conn:
        run_id = record_validation(conn, suite=summary.suite, success=summary.success,
                                   evaluated=summary.evaluated, successful=summary.successful,
                                   failed=summary.failed, docs_path=str(summary.docs_index or ""),
                                   outcomes=outcomes)
        failing = [o for o in summary.outcomes if not o.success]
        if failing:
            reason = "; ".join(f"{o.table or '-'}.{o.column or '*'} {o.expectation}: {o.observed}" for o in failing)
            record_blocked(conn, run_id, f"gate failed: {reason}")
    result = {"validation_run_id": run_id, "evaluated": summary.evaluated, "successful": summary.successful,
              "failed": summary.failed, "docs": str(summary.docs_index or "")}
    if failing:
        for o in failing:
            log.error("gate: %s on %s.%s failed: %s", o.expectation, o.table or "-", o.column or "*", o.observed)
        raise GateFailed(f"the publish gate failed {len(failing)} of {summary.evaluated} expectations "
                         f"(validation run {run_id}); the current release stays in place: {reason}")
    log.info("gate passed: %d of %d expectations (validation run %d)", summary.successful, summary.evaluated, run_id)
    return result


def publish_release(validation_run_id: int) -> dict:
    """Publish the master index as a new release (or keep the current one when nothing changed)."""
    from warehouse.releases import publish

    with settings.engine().begin() as conn:
        outcome = publish(conn, validation_run_id)
    log.info("release: %s %s (%s)", outcome.outcome, outcome.release_no, outcome.reason)
    return asdict(outcome)
