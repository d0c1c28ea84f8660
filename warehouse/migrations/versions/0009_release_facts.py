"""Every published fact is in the release: an enrolment's status date, address and fields as received.

``publish.enrolment`` carried the raw status only, and the ledgers read the rest of an enrolment (its
status date, its address, fields such as 残疾等级) from the record's current version, so a ledger of an
old release changed after later loads. Each release now holds those values itself:

* ``status_date``: the date of the record's status (``std.resident.status_date``);
* ``address_raw`` and its parts ``address_town``, ``address_village``, ``address_group``,
  ``address_house_no``: the record's own address as the source sent it, and as parsed;
* ``record_fields``: the record's fields as received (the JSON object of its raw version).

``publish.enrolment_current`` is recreated to show them. Releases published before this revision keep
these columns empty; the release content (its hash) covers them from now on, so the first publish after
the upgrade makes a new release.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    DROP VIEW publish.enrolment_current;
    ALTER TABLE publish.enrolment
        ADD COLUMN status_date date,
        ADD COLUMN address_raw text,
        ADD COLUMN address_town text,
        ADD COLUMN address_village text,
        ADD COLUMN address_group text,
        ADD COLUMN address_house_no text,
        ADD COLUMN record_fields jsonb;
    CREATE VIEW publish.enrolment_current AS
        SELECT e.* FROM publish.enrolment e JOIN publish.current_release c USING (release_no);
    """)


def downgrade() -> None:
    op.execute("""
    DROP VIEW publish.enrolment_current;
    ALTER TABLE publish.enrolment
        DROP COLUMN record_fields,
        DROP COLUMN address_house_no,
        DROP COLUMN address_group,
        DROP COLUMN address_village,
        DROP COLUMN address_town,
        DROP COLUMN address_raw,
        DROP COLUMN status_date;
    CREATE VIEW publish.enrolment_current AS
        SELECT e.* FROM publish.enrolment e JOIN publish.current_release c USING (release_no);
    """)
