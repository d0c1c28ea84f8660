"""Schema ``gate``: the publish gate's view of each source's standardized records.

The gate validates each source's records (``std.resident WHERE source = <name>``) as one Great Expectations
batch. It did so through a query asset, whose columns GX learns by running the query and fetching every row:
every standardized record came back to the gate's process on each run (200,000 persons: 432,743 rows, about
2 s). The gate now makes a view per source here (``gate.source_<name>``) and validates it as a table, whose
columns GX reads from the catalogue; it drops them when it ends, so that no migration of ``std.resident`` finds
a view depending on it. Only the hub's own role reads the schema: no department is granted it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS gate")
    op.execute("COMMENT ON SCHEMA gate IS 'the publish gate''s views of each source''s standardized records,"
               " made and dropped by each gate run'")


def downgrade() -> None:
    op.execute("DROP SCHEMA gate CASCADE")
