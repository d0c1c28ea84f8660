"""What the golden records were last built with.

* ``mpi.golden_basis``: one row — a fingerprint of the survivorship rules and the source → department
  registry the golden records were built with, and when. A run that rebuilds only the masters it touched
  rebuilds every golden record instead when the fingerprint differs (the rules or the registry changed),
  so that no golden record stays built by rules no longer in force.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE mpi.golden_basis (
        singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        fingerprint text NOT NULL,
        built_at    timestamptz NOT NULL DEFAULT now()
    );
    """)


def downgrade() -> None:
    op.execute("DROP TABLE mpi.golden_basis")
