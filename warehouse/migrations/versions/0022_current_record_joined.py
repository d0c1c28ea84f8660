"""``raw.current_record`` finds deleted records by one join, not by a lookup per record.

The view says of every record's newest version whether the source deleted it since: a tombstone that stands (not
revoked) from the version's batch on. It looked that up once per record (``EXISTS``), and with few tombstones the
planner scanned the whole tombstone table for each one: standardizing read every record of a source that way on
every run, twice (the stale records, then the new ones): 0.7-1.1 s for the medical insurance roll of a
50,000-person county. The view now joins each key's latest standing tombstone, grouped once: 0.1-0.2 s, the same
rows.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_NEWEST = ("(SELECT DISTINCT ON (source, source_record_id) *"
           " FROM raw.record ORDER BY source, source_record_id, record_id DESC) r")


def upgrade() -> None:
    op.execute(
        "CREATE OR REPLACE VIEW raw.current_record AS"
        " SELECT r.*, coalesce(d.last_batch >= r.batch_id, false) AS deleted"
        f" FROM {_NEWEST}"
        " LEFT JOIN (SELECT source, source_record_id, max(batch_id) AS last_batch FROM raw.tombstone"
        "            WHERE revoked_in IS NULL GROUP BY source, source_record_id) d"
        "   ON d.source = r.source AND d.source_record_id = r.source_record_id")


def downgrade() -> None:
    op.execute(
        "CREATE OR REPLACE VIEW raw.current_record AS"
        " SELECT r.*, EXISTS (SELECT 1 FROM raw.tombstone t WHERE t.source = r.source"
        "   AND t.source_record_id = r.source_record_id AND t.batch_id >= r.batch_id AND t.revoked_in IS NULL)"
        " AS deleted"
        f" FROM {_NEWEST}")
