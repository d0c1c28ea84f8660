"""Each drop file taken is remembered by its size and modification time beside its content hash.

``raw.ingested_file`` gains ``file_size`` (bytes) and ``file_mtime_ns`` (the modification time in nanoseconds,
as the drop folder showed it): a file seen again with the name, size and modification time of a file already
ingested is skipped without being read. Files taken before this migration have neither (NULL): they are
recognised by their content hash only, as before. An index on (source, file_name) finds them by name.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-07
"""

from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE raw.ingested_file ADD COLUMN file_size bigint, ADD COLUMN file_mtime_ns bigint;
    CREATE INDEX ingested_file_name_idx ON raw.ingested_file (source, file_name);
    """)


def downgrade() -> None:
    op.execute("""
    DROP INDEX raw.ingested_file_name_idx;
    ALTER TABLE raw.ingested_file DROP COLUMN file_mtime_ns, DROP COLUMN file_size;
    """)
