"""The publish gate's suites in the validation history, release rollback and withdrawal.

* ``audit.validation_suite``: one row per suite of a gate run (``source.<name>`` per standardized
  source, ``master_index``) with its outcome and the rows it saw, so that the next run can compare
  row counts with the last load; ``audit.validation_result`` says which suite each expectation
  belongs to.
* ``audit.publish_attempt`` also records rollbacks (outcome ``rolled_back``) and who asked.
* ``publish.release`` can be withdrawn: a rollback to release N withdraws the releases after it,
  and content equal to a withdrawn release is not published again.
* ``publish.master_person`` carries the golden phone, address and vital status too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE audit.validation_suite (
        run_id     bigint NOT NULL REFERENCES audit.validation_run (run_id),
        suite      text NOT NULL,
        success    boolean NOT NULL,
        evaluated  integer NOT NULL,
        successful integer NOT NULL,
        failed     integer NOT NULL,
        row_count  bigint,
        PRIMARY KEY (run_id, suite)
    );
    ALTER TABLE audit.validation_result ADD COLUMN suite text;
    CREATE INDEX ON audit.validation_run (started_at);

    ALTER TABLE audit.publish_attempt DROP CONSTRAINT publish_attempt_outcome_check;
    ALTER TABLE audit.publish_attempt
        ADD CONSTRAINT publish_attempt_outcome_check
            CHECK (outcome IN ('published', 'unchanged', 'blocked', 'rolled_back')),
        ADD COLUMN actor text;

    ALTER TABLE publish.release
        ADD COLUMN withdrawn_at     timestamptz,
        ADD COLUMN withdrawn_reason text;
    ALTER TABLE publish.master_person
        ADD COLUMN phone       text,
        ADD COLUMN address     text,
        ADD COLUMN status      text,
        ADD COLUMN status_date date,
        ADD COLUMN conflicts   integer NOT NULL DEFAULT 0;
    -- a view's * is expanded when it is created: recreate it to show the new columns
    CREATE OR REPLACE VIEW publish.master_person_current AS
        SELECT p.* FROM publish.master_person p JOIN publish.current_release c USING (release_no);
    """)


def downgrade() -> None:
    op.execute("""
    DROP VIEW publish.master_person_current;
    ALTER TABLE publish.master_person DROP COLUMN phone, DROP COLUMN address, DROP COLUMN status,
        DROP COLUMN status_date, DROP COLUMN conflicts;
    ALTER TABLE publish.release DROP COLUMN withdrawn_at, DROP COLUMN withdrawn_reason;
    DELETE FROM audit.publish_attempt WHERE outcome = 'rolled_back';
    ALTER TABLE audit.publish_attempt DROP CONSTRAINT publish_attempt_outcome_check;
    ALTER TABLE audit.publish_attempt DROP COLUMN actor,
        ADD CONSTRAINT publish_attempt_outcome_check CHECK (outcome IN ('published', 'unchanged', 'blocked'));
    DROP INDEX audit.validation_run_started_at_idx;
    ALTER TABLE audit.validation_result DROP COLUMN suite;
    DROP TABLE audit.validation_suite;
    CREATE VIEW publish.master_person_current AS
        SELECT p.* FROM publish.master_person p JOIN publish.current_release c USING (release_no);
    """)
