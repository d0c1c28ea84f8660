"""The warehouse's tables and views, per layer, as SQLAlchemy Core objects: the one place that names them.

Every table and view the migrations create (``warehouse/migrations/versions``) has a module-level name
here, ``<layer>_<table>``: ``raw_record``, ``std_resident``, ``mpi_crosswalk``, ``publish_release``,
``audit_finding`` … all in one :data:`metadata`. Views are Tables flagged ``info={"view": True}``
(:func:`is_view`). Columns, types, nullability, keys, indexes and check constraints match the migrated
database (``tests/warehouse/test_tables.py`` compares them); server defaults live in the migrations.

The migrations stay the way the schema changes: a change here without a migration fails that test.
Code outside ``warehouse/`` takes table names from here (``tables.std_resident.fullname``) and reads
the warehouse through the query functions of the other ``warehouse`` modules, never through SQL of its own.
"""

from __future__ import annotations

from warehouse.tables import audit, mpi, publish, raw, std
from warehouse.tables.audit import (
    audit_access_alert,
    audit_access_log,
    audit_api_key,
    audit_api_quota,
    audit_enrolment_figure,
    audit_export_log,
    audit_finding,
    audit_finding_count,
    audit_finding_event,
    audit_index_write,
    audit_publish_attempt,
    audit_validation_result,
    audit_validation_run,
    audit_validation_suite,
    audit_workbench_session,
)
from warehouse.tables.base import is_view, metadata
from warehouse.tables.mpi import (
    mpi_crosswalk,
    mpi_golden,
    mpi_golden_basis,
    mpi_golden_conflict,
    mpi_golden_value,
    mpi_link_run,
    mpi_master,
    mpi_master_event,
    mpi_master_id_seq,
    mpi_match_edge,
    mpi_match_feature,
    mpi_model_state,
    mpi_review_pair,
    mpi_term_frequency,
)
from warehouse.tables.publish import (
    publish_change_event,
    publish_current_release,
    publish_enrolment,
    publish_enrolment_current,
    publish_master_person,
    publish_master_person_current,
    publish_release,
    publish_webhook,
    publish_webhook_outbox,
)
from warehouse.tables.raw import (
    raw_current_record,
    raw_ingested_file,
    raw_load_batch,
    raw_quarantine,
    raw_record,
    raw_source_state,
    raw_tombstone,
)
from warehouse.tables.std import std_resident

#: The layers in the order data flows through them, each with its tables and views.
LAYERS = {layer.SCHEMA: layer.TABLES for layer in (raw, std, mpi, publish, audit)}
#: The warehouse's schemas (the department schemas ``dept_<department>`` are made by the grants).
SCHEMAS = tuple(LAYERS)

__all__ = [
    "LAYERS",
    "SCHEMAS",
    "audit_access_alert",
    "audit_access_log",
    "audit_api_key",
    "audit_api_quota",
    "audit_enrolment_figure",
    "audit_export_log",
    "audit_finding_event",
    "audit_workbench_session",
    "audit_finding",
    "audit_finding_count",
    "audit_index_write",
    "audit_publish_attempt",
    "audit_validation_result",
    "audit_validation_run",
    "audit_validation_suite",
    "is_view",
    "metadata",
    "mpi_crosswalk",
    "mpi_golden",
    "mpi_golden_basis",
    "mpi_golden_conflict",
    "mpi_golden_value",
    "mpi_link_run",
    "mpi_master",
    "mpi_master_event",
    "mpi_master_id_seq",
    "mpi_match_edge",
    "mpi_match_feature",
    "mpi_model_state",
    "mpi_review_pair",
    "mpi_term_frequency",
    "publish_change_event",
    "publish_current_release",
    "publish_enrolment",
    "publish_enrolment_current",
    "publish_master_person",
    "publish_master_person_current",
    "publish_release",
    "publish_webhook",
    "publish_webhook_outbox",
    "raw_current_record",
    "raw_ingested_file",
    "raw_load_batch",
    "raw_quarantine",
    "raw_record",
    "raw_source_state",
    "raw_tombstone",
    "std_resident",
    "views",
]


def views() -> list:
    """The views among the warehouse's tables."""
    return [t for t in metadata.tables.values() if is_view(t)]
