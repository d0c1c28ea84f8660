"""Every master-index run records what it ran with; the gate records what it validated.

* ``ran_with`` (JSON) on ``mpi.link_run``, ``audit.validation_run``, ``audit.publish_attempt`` and
  ``publish.release``: the matching model (version and SHA-256 of the model file), the SHA-256 of each
  rules file (survivorship, gate rules, sharing), the code (package version, git commit when known)
  and the Airflow DAG run when the step ran under Airflow. A release holds the context of the matching
  run that built the index, of the gate run that let it through and of the publish itself.
* ``content_hash`` on ``audit.validation_run``: the digest of the index and enrolments the gate
  validated. A publish whose content differs (a matching run committed after the gate) is held.

Rows written before this revision keep these columns empty.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE mpi.link_run ADD COLUMN ran_with jsonb;
    ALTER TABLE audit.validation_run ADD COLUMN ran_with jsonb, ADD COLUMN content_hash text;
    ALTER TABLE audit.publish_attempt ADD COLUMN ran_with jsonb;
    ALTER TABLE publish.release ADD COLUMN ran_with jsonb;
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE publish.release DROP COLUMN ran_with;
    ALTER TABLE audit.publish_attempt DROP COLUMN ran_with;
    ALTER TABLE audit.validation_run DROP COLUMN content_hash, DROP COLUMN ran_with;
    ALTER TABLE mpi.link_run DROP COLUMN ran_with;
    """)
