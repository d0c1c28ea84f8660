"""The change feed per department and its webhooks.

* ``publish.change_event``: what changed for each department from one release to the next, cut to
  what the department's view shows (masters added, changed with the fields, merged with the survivor,
  split, deceased, removed; enrolments of its own programmes added, moved, changed, removed), numbered
  per release (``seq``) so that a reader can resume after the last event it holds.
* ``publish.webhook``: one optional subscription per department (URL, signing secret, purpose code).
* ``publish.webhook_outbox``: the events queued for a subscription after each publish and their delivery
  (attempts, last status or error, next attempt, delivered at).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE publish.change_event (
        department text NOT NULL,
        release_no integer NOT NULL REFERENCES publish.release (release_no),
        seq        integer NOT NULL,
        kind       text NOT NULL CONSTRAINT change_event_kind_check CHECK (kind IN (
            'added', 'changed', 'deceased', 'merged', 'split', 'removed',
            'enrolment_added', 'enrolment_moved', 'enrolment_changed', 'enrolment_removed')),
        master_id  text NOT NULL,
        payload    jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (department, release_no, seq)
    );
    CREATE INDEX change_event_release_no_idx ON publish.change_event (release_no);

    CREATE TABLE publish.webhook (
        webhook_id   bigserial PRIMARY KEY,
        department   text NOT NULL,
        url          text NOT NULL,
        secret       text NOT NULL,
        purpose      text,
        from_release integer NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        created_by   text,
        CONSTRAINT webhook_department_key UNIQUE (department)
    );

    CREATE TABLE publish.webhook_outbox (
        webhook_id      bigint NOT NULL REFERENCES publish.webhook (webhook_id) ON DELETE CASCADE,
        department      text NOT NULL,
        release_no      integer NOT NULL,
        seq             integer NOT NULL,
        state           text NOT NULL DEFAULT 'pending'
                        CONSTRAINT webhook_outbox_state_check CHECK (state IN ('pending', 'delivered')),
        attempts        integer NOT NULL DEFAULT 0,
        queued_at       timestamptz NOT NULL DEFAULT now(),
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        last_attempt_at timestamptz,
        last_status     integer,
        last_error      text,
        delivered_at    timestamptz,
        PRIMARY KEY (webhook_id, release_no, seq),
        FOREIGN KEY (department, release_no, seq) REFERENCES publish.change_event (department, release_no, seq)
    );
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE publish.webhook_outbox;
    DROP TABLE publish.webhook;
    DROP TABLE publish.change_event;
    """)
