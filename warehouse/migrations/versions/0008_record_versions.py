"""Reverts are changes: a record returning to an earlier content lands again as a new version.

``raw.record`` kept one row per (source, source_record_id, content_hash), so a record going
A -> B -> A could never land A again and B stayed current. A record is now a duplicate only when
it equals the newest landed version of its key; the unique constraint goes, and the index on
(source, source_record_id, record_id DESC) finds that newest version.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE raw.record DROP CONSTRAINT record_source_source_record_id_content_hash_key")


def downgrade() -> None:
    # a revert landed twice under one hash: keep its first landing (the later ones stay in history only)
    op.execute("""
    DELETE FROM raw.record r USING raw.record e
     WHERE e.source = r.source AND e.source_record_id = r.source_record_id
       AND e.content_hash = r.content_hash AND e.record_id < r.record_id
       AND NOT EXISTS (SELECT 1 FROM std.resident s WHERE s.raw_record_id = r.record_id);
    ALTER TABLE raw.record ADD CONSTRAINT record_source_source_record_id_content_hash_key
        UNIQUE (source, source_record_id, content_hash);
    """)
