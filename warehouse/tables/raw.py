"""Layer raw: records exactly as received, load batches, quarantine and ingestion state. Append-only."""

from __future__ import annotations

import sqlalchemy as sa

from warehouse.tables.base import JSONB, TEXT, TIMESTAMP, metadata, view_of

SCHEMA = "raw"

#: One load of one source: what it received and what became of it (received = landed + quarantined + duplicates).
raw_load_batch = sa.Table(
    "load_batch", metadata,
    sa.Column("batch_id", sa.BigInteger, primary_key=True),
    sa.Column("source", TEXT, nullable=False),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("status", TEXT, nullable=False),
    sa.Column("received", sa.Integer, nullable=False),
    sa.Column("landed", sa.Integer, nullable=False),
    sa.Column("quarantined", sa.Integer, nullable=False),
    sa.Column("duplicates", sa.Integer, nullable=False),
    sa.Column("pages", sa.Integer, nullable=False),
    sa.Column("error", TEXT),
    sa.Column("mode", TEXT, nullable=False),
    sa.Column("tombstones", sa.Integer, nullable=False),
    sa.Column("schema_drift", JSONB),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="load_batch_status_check"),
    sa.CheckConstraint("mode IN ('full', 'incremental')", name="load_batch_mode_check"),
    sa.Index("load_batch_source_batch_id_idx", "source", "batch_id"),
    schema=SCHEMA,
)

#: Every version of every record a source sent, as received (JSONB): a new row whenever the content differs
#: from the key's newest version (so a record returning to an earlier content is a new version).
raw_record = sa.Table(
    "record", metadata,
    sa.Column("record_id", sa.BigInteger, primary_key=True),
    sa.Column("source", TEXT, nullable=False),
    sa.Column("source_record_id", TEXT, nullable=False),
    sa.Column("content_hash", TEXT, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("raw.load_batch.batch_id"), nullable=False),
    sa.Column("fetched_at", TIMESTAMP, nullable=False),
    schema=SCHEMA,
)
# the newest version of a record first: declared after the Table so the DESC can name its column
sa.Index("record_source_source_record_id_record_id_idx", raw_record.c.source, raw_record.c.source_record_id,
         raw_record.c.record_id.desc())

#: What could not be landed, with a reason code: nothing received is lost.
raw_quarantine = sa.Table(
    "quarantine", metadata,
    sa.Column("quarantine_id", sa.BigInteger, primary_key=True),
    sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("raw.load_batch.batch_id"), nullable=False),
    sa.Column("source", TEXT, nullable=False),
    sa.Column("source_record_id", TEXT),
    sa.Column("reason_code", TEXT, nullable=False),
    sa.Column("detail", TEXT, nullable=False),
    sa.Column("payload", TEXT, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    schema=SCHEMA,
)

#: The incremental cursor of each source, advanced in the transaction that commits the data.
raw_source_state = sa.Table(
    "source_state", metadata,
    sa.Column("source", TEXT, primary_key=True),
    sa.Column("cursor", TEXT),
    sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("raw.load_batch.batch_id")),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    schema=SCHEMA,
)

#: Files taken from a drop folder, by content hash: the same content is never ingested twice.
raw_ingested_file = sa.Table(
    "ingested_file", metadata,
    sa.Column("source", TEXT, primary_key=True),
    sa.Column("content_hash", TEXT, primary_key=True),
    sa.Column("file_name", TEXT, nullable=False),
    sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("raw.load_batch.batch_id"), nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("ingested_at", TIMESTAMP, nullable=False),
    # the file's size and modification time (ns) as the drop folder showed them: a file seen again with the
    # same name, size and time is skipped unread (NULL for files taken before these were kept)
    sa.Column("file_size", sa.BigInteger),
    sa.Column("file_mtime_ns", sa.BigInteger),
    sa.Index("ingested_file_name_idx", "source", "file_name"),
    schema=SCHEMA,
)

#: Deletions at the source: flagged by the source, or absent from a full snapshot.
raw_tombstone = sa.Table(
    "tombstone", metadata,
    sa.Column("source", TEXT, primary_key=True),
    sa.Column("source_record_id", TEXT, primary_key=True),
    sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("raw.load_batch.batch_id"), primary_key=True),
    sa.Column("reason", TEXT, nullable=False),
    sa.Column("revoked_in", sa.BigInteger, sa.ForeignKey("raw.load_batch.batch_id")),
    sa.Column("detected_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint("reason IN ('flagged_deleted', 'absent_from_snapshot')", name="tombstone_reason_check"),
    schema=SCHEMA,
)

#: View: the newest version of every record, and whether the source has deleted it since.
raw_current_record = view_of("current_record", raw_record, sa.Column("deleted", sa.Boolean))

TABLES = (raw_load_batch, raw_record, raw_quarantine, raw_source_state, raw_ingested_file, raw_tombstone,
          raw_current_record)
