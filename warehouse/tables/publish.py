"""Layer publish: numbered releases of the master index, the pointer to the current one, and what
departments read (the current release's people and enrolments)."""

from __future__ import annotations

import sqlalchemy as sa

from warehouse.tables.base import JSONB, TEXT, TIMESTAMP, golden_columns, metadata, view_of

SCHEMA = "publish"

#: Every release; a rollback withdraws the releases after the one it returns to.
publish_release = sa.Table(
    "release", metadata,
    sa.Column("release_no", sa.Integer, primary_key=True),
    sa.Column("published_at", TIMESTAMP, nullable=False),
    sa.Column("master_count", sa.Integer, nullable=False),
    sa.Column("record_count", sa.Integer, nullable=False),
    sa.Column("content_hash", TEXT, nullable=False),
    sa.Column("validation_run_id", sa.BigInteger, nullable=False),
    sa.Column("withdrawn_at", TIMESTAMP),
    sa.Column("withdrawn_reason", TEXT),
    # what the matching run, the gate run and the publish ran with (model, rules, code, Airflow run)
    sa.Column("ran_with", JSONB),
    schema=SCHEMA,
)

#: The golden records of each release. Like the enrolments and change events, they are written only in the
#: transaction that inserts their release, and carry no foreign key to it (a lookup per row, in every release).
publish_master_person = sa.Table(
    "master_person", metadata,
    sa.Column("release_no", sa.Integer, primary_key=True),
    sa.Column("master_id", TEXT, primary_key=True),
    *golden_columns(),
    schema=SCHEMA,
)
# the read API looks people up by ID number in the current release
sa.Index("master_person_release_no_id_number_idx", publish_master_person.c.release_no,
         publish_master_person.c.id_number, postgresql_where=publish_master_person.c.id_number.isnot(None))

#: The current release (one row), switched in the transaction that writes a release.
publish_current_release = sa.Table(
    "current_release", metadata,
    sa.Column("singleton", sa.Boolean, primary_key=True),
    sa.Column("release_no", sa.Integer, sa.ForeignKey("publish.release.release_no"), nullable=False),
    sa.Column("switched_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint("singleton", name="current_release_singleton_check"),
    schema=SCHEMA,
)

#: View: the people of the current release.
publish_master_person_current = view_of("master_person_current", publish_master_person)

#: Per release, every source record's master id with its department and programme, and the record's status,
#: status date, address and fields as received when the release was published (row-level security per
#: department, set up by the grants). A release's ledgers read these, never the records' later versions.
publish_enrolment = sa.Table(
    "enrolment", metadata,
    sa.Column("release_no", sa.Integer, primary_key=True),
    sa.Column("master_id", TEXT, nullable=False),
    sa.Column("source", TEXT, primary_key=True),
    sa.Column("source_record_id", TEXT, primary_key=True),
    sa.Column("department", TEXT, nullable=False),
    sa.Column("program", TEXT),
    sa.Column("status_raw", TEXT),
    sa.Column("status_date", sa.Date),
    sa.Column("address_raw", TEXT),
    sa.Column("address_town", TEXT),
    sa.Column("address_village", TEXT),
    sa.Column("address_group", TEXT),
    sa.Column("address_house_no", TEXT),
    sa.Column("record_fields", JSONB),
    sa.Index("enrolment_release_no_master_id_idx", "release_no", "master_id"),
    schema=SCHEMA,
)

#: View: the enrolments of the current release.
publish_enrolment_current = view_of("enrolment_current", publish_enrolment)

#: Per department, what changed from the release before to this one, cut to what its view shows (the change feed).
publish_change_event = sa.Table(
    "change_event", metadata,
    sa.Column("department", TEXT, primary_key=True),
    sa.Column("release_no", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", TEXT, nullable=False),
    sa.Column("master_id", TEXT, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint("kind IN ('added', 'changed', 'deceased', 'merged', 'split', 'removed', 'enrolment_added',"
                       " 'enrolment_moved', 'enrolment_changed', 'enrolment_removed')", name="change_event_kind_check"),
    sa.Index("change_event_release_no_idx", "release_no"),
    schema=SCHEMA,
)

#: A department's webhook subscription (at most one): where its change events are posted, signed with ``secret``.
publish_webhook = sa.Table(
    "webhook", metadata,
    sa.Column("webhook_id", sa.BigInteger, primary_key=True),
    sa.Column("department", TEXT, nullable=False),
    sa.Column("url", TEXT, nullable=False),
    sa.Column("secret", TEXT, nullable=False),
    sa.Column("purpose", TEXT),
    sa.Column("from_release", sa.Integer, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", TEXT),
    sa.UniqueConstraint("department", name="webhook_department_key"),
    schema=SCHEMA,
)

#: The change events queued for a webhook after each publish, and their delivery.
publish_webhook_outbox = sa.Table(
    "webhook_outbox", metadata,
    sa.Column("webhook_id", sa.BigInteger, sa.ForeignKey("publish.webhook.webhook_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("department", TEXT, nullable=False),
    sa.Column("release_no", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("state", TEXT, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("queued_at", TIMESTAMP, nullable=False),
    sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
    sa.Column("last_attempt_at", TIMESTAMP),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", TEXT),
    sa.Column("delivered_at", TIMESTAMP),
    sa.ForeignKeyConstraint(["department", "release_no", "seq"], ["publish.change_event.department",
                            "publish.change_event.release_no", "publish.change_event.seq"]),
    sa.CheckConstraint("state IN ('pending', 'delivered')", name="webhook_outbox_state_check"),
    schema=SCHEMA,
)

TABLES = (publish_release, publish_master_person, publish_current_release, publish_master_person_current,
          publish_enrolment, publish_enrolment_current, publish_change_event, publish_webhook, publish_webhook_outbox)
