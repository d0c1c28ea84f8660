"""Ingestion state: cursors, ingested files, tombstones, schema drift.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE raw.load_batch
    ADD COLUMN mode text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental')),
    ADD COLUMN tombstones integer NOT NULL DEFAULT 0,
    ADD COLUMN schema_drift jsonb;

-- the incremental cursor of each source; advanced in the transaction that commits the data
CREATE TABLE raw.source_state (
    source      text PRIMARY KEY,
    cursor      text,
    batch_id    bigint REFERENCES raw.load_batch (batch_id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- files taken from a drop folder: the same content is never ingested twice
CREATE TABLE raw.ingested_file (
    source       text NOT NULL,
    content_hash text NOT NULL,
    file_name    text NOT NULL,
    batch_id     bigint NOT NULL REFERENCES raw.load_batch (batch_id),
    records      integer NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, content_hash)
);

-- deletions at the source: flagged by the source, or absent from a full snapshot
CREATE TABLE raw.tombstone (
    source           text NOT NULL,
    source_record_id text NOT NULL,
    batch_id         bigint NOT NULL REFERENCES raw.load_batch (batch_id),
    reason           text NOT NULL CHECK (reason IN ('flagged_deleted', 'absent_from_snapshot')),
    revoked_in       bigint REFERENCES raw.load_batch (batch_id),
    detected_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_record_id, batch_id)
);

-- the newest version of every record, and whether the source has deleted it since
CREATE VIEW raw.current_record AS
SELECT r.*, EXISTS (
        SELECT 1 FROM raw.tombstone t
        WHERE t.source = r.source AND t.source_record_id = r.source_record_id
          AND t.batch_id >= r.batch_id AND t.revoked_in IS NULL) AS deleted
FROM (SELECT DISTINCT ON (source, source_record_id) *
      FROM raw.record ORDER BY source, source_record_id, record_id DESC) r;
"""

DOWNGRADE = """
DROP VIEW raw.current_record;
DROP TABLE raw.tombstone;
DROP TABLE raw.ingested_file;
DROP TABLE raw.source_state;
ALTER TABLE raw.load_batch DROP COLUMN mode, DROP COLUMN tombstones, DROP COLUMN schema_drift;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
