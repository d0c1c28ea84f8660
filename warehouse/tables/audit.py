"""Layer audit: validation history, publishing decisions, cross-department findings, API keys and the
access log, queryable by auditors."""

from __future__ import annotations

import sqlalchemy as sa

from warehouse.tables.base import DOUBLE, JSONB, TEXT, TEXT_ARRAY, TIMESTAMP, metadata

SCHEMA = "audit"

#: One gate run (suite ``publish_gate``) with its totals and the Data Docs it wrote.
audit_validation_run = sa.Table(
    "validation_run", metadata,
    sa.Column("run_id", sa.BigInteger, primary_key=True),
    sa.Column("suite", TEXT, nullable=False),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("evaluated", sa.Integer, nullable=False),
    sa.Column("successful", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("docs_path", TEXT),
    sa.Column("ran_with", JSONB),  # model, rules and code version, Airflow run (hub.provenance)
    sa.Column("content_hash", TEXT),  # the digest of what the gate validated (warehouse.releases.content_hash)
    sa.Column("index_state", TEXT),  # the index writes and registry it saw (warehouse.releases.content_state)
    sa.Index("validation_run_started_at_idx", "started_at"),
    schema=SCHEMA,
)

#: One row per transaction that wrote what a release publishes (statement triggers on std.resident,
#: mpi.crosswalk, mpi.golden, and raw.record's updates and deletions); never deleted, so the count only grows.
audit_index_write = sa.Table(
    "index_write", metadata,
    sa.Column("txid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("written_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
    schema=SCHEMA,
)

#: Per release and set of sources (sorted, comma-separated): its published records per source, duplicates, masters
#: and masters on two or more of the sources, as the department scorecards' trend counts them; counted once, as a
#: release's enrolments never change.
audit_enrolment_figure = sa.Table(
    "enrolment_figure", metadata,
    sa.Column("release_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sources", TEXT, primary_key=True),
    sa.Column("records", JSONB, nullable=False),
    sa.Column("duplicates", sa.BigInteger, nullable=False),
    sa.Column("masters", sa.BigInteger, nullable=False),
    sa.Column("cross_source", sa.BigInteger, nullable=False),
    sa.Column("counted_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
    schema=SCHEMA,
)

#: Every expectation of a gate run: counts and short observed values, never personal data.
audit_validation_result = sa.Table(
    "validation_result", metadata,
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("audit.validation_run.run_id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("expectation", TEXT, nullable=False),
    sa.Column("table_name", TEXT),
    sa.Column("column_name", TEXT),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("observed", TEXT),
    sa.Column("unexpected_count", sa.BigInteger),
    sa.Column("unexpected_percent", DOUBLE),
    sa.Column("suite", TEXT),
    schema=SCHEMA,
)

#: Every attempt to publish (or roll back) and its outcome.
audit_publish_attempt = sa.Table(
    "publish_attempt", metadata,
    sa.Column("attempt_id", sa.BigInteger, primary_key=True),
    sa.Column("attempted_at", TIMESTAMP, nullable=False),
    sa.Column("validation_run_id", sa.BigInteger, sa.ForeignKey("audit.validation_run.run_id")),
    sa.Column("outcome", TEXT, nullable=False),
    sa.Column("release_no", sa.Integer),
    sa.Column("reason", TEXT, nullable=False),
    sa.Column("actor", TEXT),
    sa.Column("ran_with", JSONB),
    sa.CheckConstraint("outcome IN ('published', 'unchanged', 'blocked', 'rolled_back')",
                       name="publish_attempt_outcome_check"),
    schema=SCHEMA,
)

#: One row per suite of a gate run (``source.<name>``, ``master_index``) with the rows it saw.
audit_validation_suite = sa.Table(
    "validation_suite", metadata,
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("audit.validation_run.run_id"), primary_key=True),
    sa.Column("suite", TEXT, primary_key=True),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("evaluated", sa.Integer, nullable=False),
    sa.Column("successful", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("row_count", sa.BigInteger),
    schema=SCHEMA,
)

#: Cross-department consistency findings with a stable id, the owning department and masked evidence.
audit_finding = sa.Table(
    "finding", metadata,
    sa.Column("finding_id", TEXT, primary_key=True),
    sa.Column("kind", TEXT, nullable=False),
    sa.Column("department", TEXT, nullable=False),
    sa.Column("master_id", TEXT),
    sa.Column("summary", TEXT, nullable=False),
    sa.Column("evidence", JSONB, nullable=False),
    sa.Column("first_release", sa.Integer, nullable=False),
    sa.Column("last_release", sa.Integer, nullable=False),
    sa.Column("first_seen_at", TIMESTAMP, nullable=False),
    sa.Column("last_seen_at", TIMESTAMP, nullable=False),
    sa.Column("status", TEXT, nullable=False),
    sa.Column("assigned_to", TEXT),
    sa.Column("due_at", TIMESTAMP),
    sa.Column("acknowledged_at", TIMESTAMP),
    sa.Column("assigned_at", TIMESTAMP),
    sa.Column("closed_at", TIMESTAMP),
    sa.Column("close_reason", TEXT),
    sa.Column("closed_by", TEXT),
    sa.CheckConstraint("status IN ('open', 'acknowledged', 'assigned', 'resolved', 'dismissed')",
                       name="finding_status_check"),
    sa.Index("finding_department_status_idx", "department", "status"),
    schema=SCHEMA,
)

#: The history of each finding (append-only): every step of its lifecycle, by whom, why, in which release.
audit_finding_event = sa.Table(
    "finding_event", metadata,
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("finding_id", TEXT, sa.ForeignKey("audit.finding.finding_id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", TIMESTAMP, nullable=False),
    sa.Column("actor", TEXT, nullable=False),
    sa.Column("action", TEXT, nullable=False),
    sa.Column("from_status", TEXT),
    sa.Column("to_status", TEXT, nullable=False),
    sa.Column("assigned_to", TEXT),
    sa.Column("reason", TEXT),
    sa.Column("comment", TEXT),
    sa.Column("release_no", sa.Integer),
    sa.CheckConstraint("action IN ('opened', 'acknowledged', 'assigned', 'resolved', 'dismissed', 'reopened',"
                       " 'auto_resolved', 'commented')", name="finding_event_action_check"),
    sa.Index("finding_event_finding_id_idx", "finding_id", "event_id"),
    schema=SCHEMA,
)

#: Sign-ins to the workbench: a hash of the session token (the cookie holds the token), the key it was opened
#: with, the token every form posts back, when it expires and when it ended.
audit_workbench_session = sa.Table(
    "workbench_session", metadata,
    sa.Column("session_hash", TEXT, primary_key=True),
    sa.Column("key_id", TEXT, sa.ForeignKey("audit.api_key.key_id"), nullable=False),
    sa.Column("csrf_token", TEXT, nullable=False),
    sa.Column("client", TEXT),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("expires_at", TIMESTAMP, nullable=False),
    sa.Column("ended_at", TIMESTAMP),
    sa.Index("workbench_session_key_id_idx", "key_id"),
    schema=SCHEMA,
)

#: Findings counted per release, kind and department, for trends.
audit_finding_count = sa.Table(
    "finding_count", metadata,
    sa.Column("release_no", sa.Integer, primary_key=True),
    sa.Column("kind", TEXT, primary_key=True),
    sa.Column("department", TEXT, primary_key=True),
    sa.Column("findings", sa.Integer, nullable=False),
    sa.Column("counted_at", TIMESTAMP, nullable=False),
    schema=SCHEMA,
)

#: Read-API keys per department; only a hash of the key is kept.
audit_api_key = sa.Table(
    "api_key", metadata,
    sa.Column("key_id", TEXT, primary_key=True),
    sa.Column("department", TEXT, nullable=False),
    sa.Column("key_hash", TEXT, nullable=False),
    sa.Column("label", TEXT, nullable=False),
    sa.Column("scopes", TEXT_ARRAY, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("revoked_at", TIMESTAMP),
    sa.Column("blocked_at", TIMESTAMP),  # stopped by sweep detection (audit.access_alert says why)
    sa.Column("blocked_reason", TEXT),
    sa.Index("api_key_key_hash_idx", "key_hash", unique=True),
    schema=SCHEMA,
)

#: One row per access of the read API: who, what, purpose code, when, how many results and which masters;
#: append-only (a trigger refuses UPDATE and DELETE), each row's ``row_hash`` covers its content and the
#: previous row's hash (``prev_hash``).
audit_access_log = sa.Table(
    "access_log", metadata,
    sa.Column("access_id", sa.BigInteger, primary_key=True),
    sa.Column("accessed_at", TIMESTAMP, nullable=False),
    sa.Column("key_id", TEXT),
    sa.Column("department", TEXT),
    sa.Column("endpoint", TEXT, nullable=False),
    sa.Column("purpose", TEXT),
    sa.Column("requested", sa.Integer, nullable=False),
    sa.Column("results", sa.Integer, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("client", TEXT),
    sa.Column("master_ids", TEXT_ARRAY, nullable=False, server_default="{}"),
    sa.Column("prev_hash", TEXT),
    sa.Column("row_hash", TEXT),
    sa.Index("access_log_department_accessed_at_idx", "department", "accessed_at"),
    sa.Index("access_log_key_id_accessed_at_idx", "key_id", "accessed_at"),
    schema=SCHEMA,
)

#: Requests and persons served per scope (``key``, ``department``, ``client``), subject and day: the
#: quotas every API process counts against.
audit_api_quota = sa.Table(
    "api_quota", metadata,
    sa.Column("scope", TEXT, primary_key=True),
    sa.Column("subject", TEXT, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("persons", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("scope IN ('key', 'department', 'client')", name="api_quota_scope_check"),
    schema=SCHEMA,
)

#: What the read API noticed and acted on: a sweep of master ids (the key is blocked), a quota exhausted.
audit_access_alert = sa.Table(
    "access_alert", metadata,
    sa.Column("alert_id", sa.BigInteger, primary_key=True),
    sa.Column("raised_at", TIMESTAMP, nullable=False),
    sa.Column("kind", TEXT, nullable=False),
    sa.Column("key_id", TEXT),
    sa.Column("department", TEXT),
    sa.Column("client", TEXT),
    sa.Column("detail", TEXT, nullable=False),
    sa.Index("access_alert_raised_at_idx", "raised_at"),
    schema=SCHEMA,
)

#: Every file the hub wrote with personal data (ledgers, findings workbooks, explanation pages).
audit_export_log = sa.Table(
    "export_log", metadata,
    sa.Column("export_id", sa.BigInteger, primary_key=True),
    sa.Column("exported_at", TIMESTAMP, nullable=False),
    sa.Column("actor", TEXT, nullable=False),
    sa.Column("department", TEXT),
    sa.Column("kind", TEXT, nullable=False),
    sa.Column("what", TEXT, nullable=False),
    sa.Column("purpose", TEXT),
    sa.Column("path", TEXT),
    sa.Column("rows", sa.Integer),
    sa.Index("export_log_exported_at_idx", "exported_at"),
    schema=SCHEMA,
)

TABLES = (audit_validation_run, audit_validation_result, audit_publish_attempt, audit_validation_suite,
          audit_finding, audit_finding_count, audit_api_key, audit_access_log, audit_api_quota, audit_access_alert,
          audit_export_log, audit_finding_event, audit_workbench_session, audit_index_write,
          audit_enrolment_figure)
