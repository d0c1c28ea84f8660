"""``audit.enrolment_figure``: a release's enrolment counts for the department scorecards' trend, kept.

Each department's scorecard shows the latest 30 releases: records per source, duplicates, masters and masters
on two or more of its sources. They were counted from ``publish.enrolment`` for every release in the trend on
every report run: with a month of daily releases, 30 releases of enrolments each day (200,000 persons: about
0.8 s per release; a county of a million has two million enrolments per release). A release's enrolments never
change once published, so its figures are counted once per set of sources and kept here.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE audit.enrolment_figure (
        release_no   integer NOT NULL,
        sources      text NOT NULL,
        records      jsonb NOT NULL,
        duplicates   bigint NOT NULL,
        masters      bigint NOT NULL,
        cross_source bigint NOT NULL,
        counted_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (release_no, sources)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE audit.enrolment_figure")
