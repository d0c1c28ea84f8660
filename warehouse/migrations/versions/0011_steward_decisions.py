"""Steward decisions as an append-only history (``mpi.decision``).

Every decision a steward makes is a row: a pair of records decided ``match`` or ``not_a_match`` (from
the review queue or not), a ``split`` of a master (the listed records become a master apart from the
rest), a ``move_out`` of one record, or a ``detach_id`` (the record's ID number belongs to someone
else). A new decision on the same subject supersedes the earlier one (``supersedes``), it never
erases it: rows are never updated nor deleted (a trigger refuses both). Matching runs honour the
latest decision per pair of records and per record.

The decisions already written on ``mpi.review_pair`` are copied in, oldest first; the pair keeps its
decision columns as the queue's summary of the latest decision.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE mpi.decision (
        decision_id bigserial PRIMARY KEY,
        kind        text NOT NULL CHECK (kind IN ('match', 'not_a_match', 'split', 'move_out', 'detach_id')),
        subject     text NOT NULL,
        record_keys text[] NOT NULL,
        other_keys  text[] NOT NULL DEFAULT '{}',
        master_id   text,
        review_id   bigint,
        reviewer    text NOT NULL,
        comment     text,
        decided_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        supersedes  bigint REFERENCES mpi.decision (decision_id)
    );
    CREATE INDEX ON mpi.decision (subject);
    CREATE INDEX ON mpi.decision (master_id);
    CREATE INDEX ON mpi.decision (decided_at);

    INSERT INTO mpi.decision (kind, subject, record_keys, review_id, reviewer, comment, decided_at)
    SELECT decision, 'pair:' || least(record_key_l, record_key_r) || ' ' || greatest(record_key_l, record_key_r),
           ARRAY[record_key_l, record_key_r], review_id, coalesce(reviewer, '(not recorded)'), comment, decided_at
    FROM mpi.review_pair WHERE decided_at IS NOT NULL AND decision IS NOT NULL
    ORDER BY decided_at, review_id;
    UPDATE mpi.decision d SET supersedes = p.prev
    FROM (SELECT decision_id, lag(decision_id) OVER (PARTITION BY subject ORDER BY decision_id) AS prev
          FROM mpi.decision) p
    WHERE p.decision_id = d.decision_id AND p.prev IS NOT NULL;

    CREATE FUNCTION mpi.decision_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'mpi.decision is append-only: decision % cannot be changed or deleted; record a new'
                        ' decision, which supersedes it', OLD.decision_id;
    END $$;
    CREATE TRIGGER decision_is_append_only BEFORE UPDATE OR DELETE ON mpi.decision
        FOR EACH ROW EXECUTE FUNCTION mpi.decision_is_append_only();
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE mpi.decision;
    DROP FUNCTION mpi.decision_is_append_only();
    """)
