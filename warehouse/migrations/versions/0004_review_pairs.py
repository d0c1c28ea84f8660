"""Pairs of records for a steward to review: the grey zone and links a hard constraint refused.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE mpi.review_pair (
        review_id         bigserial PRIMARY KEY,
        record_key_l      text NOT NULL,
        record_key_r      text NOT NULL,
        match_probability double precision,
        match_weight      double precision,
        review_reason     text NOT NULL,
        evidence          jsonb NOT NULL,
        created_at        timestamptz NOT NULL DEFAULT now(),
        decided_at        timestamptz,
        decision          text CHECK (decision IN ('match', 'not_a_match'))
    );
    CREATE INDEX ON mpi.review_pair (record_key_l);
    CREATE INDEX ON mpi.review_pair (record_key_r);
    """)


def downgrade() -> None:
    op.execute("DROP TABLE mpi.review_pair")
