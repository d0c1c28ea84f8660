"""The workbench: sign-in sessions, and findings with a lifecycle.

* ``audit.workbench_session``: one row per sign-in to the workbench (``/workbench/``) with a department's
  API key: only a hash of the session token is kept (the cookie holds the token), the key it was opened
  with, a token that every form posts back (cross-site request forgery), when it expires and when it ended.
* ``audit.finding`` gains a lifecycle: ``open → acknowledged → assigned → resolved`` or ``dismissed`` with a
  reason, the department (or team) it is assigned to, a due date from the kind's SLA, and the times of each
  step; the status check admits the new states.
* ``audit.finding_event``: the history of each finding — every step, by whom, with the reason and comment,
  and the release that opened, reopened or resolved it automatically. Append-only.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE audit.workbench_session (
        session_hash text PRIMARY KEY,
        key_id       text NOT NULL REFERENCES audit.api_key (key_id),
        csrf_token   text NOT NULL,
        client       text,
        created_at   timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL,
        ended_at     timestamptz
    );
    CREATE INDEX workbench_session_key_id_idx ON audit.workbench_session (key_id);

    ALTER TABLE audit.finding DROP CONSTRAINT finding_status_check;
    ALTER TABLE audit.finding ADD CONSTRAINT finding_status_check
        CHECK (status IN ('open', 'acknowledged', 'assigned', 'resolved', 'dismissed'));
    ALTER TABLE audit.finding
        ADD COLUMN assigned_to     text,
        ADD COLUMN due_at          timestamptz,
        ADD COLUMN acknowledged_at timestamptz,
        ADD COLUMN assigned_at     timestamptz,
        ADD COLUMN closed_at       timestamptz,
        ADD COLUMN close_reason    text,
        ADD COLUMN closed_by       text;

    CREATE TABLE audit.finding_event (
        event_id    bigserial PRIMARY KEY,
        finding_id  text NOT NULL REFERENCES audit.finding (finding_id) ON DELETE CASCADE,
        at          timestamptz NOT NULL DEFAULT now(),
        actor       text NOT NULL,
        action      text NOT NULL CONSTRAINT finding_event_action_check CHECK (action IN (
            'opened', 'acknowledged', 'assigned', 'resolved', 'dismissed', 'reopened', 'auto_resolved', 'commented')),
        from_status text,
        to_status   text NOT NULL,
        assigned_to text,
        reason      text,
        comment     text,
        release_no  integer
    );
    CREATE INDEX finding_event_finding_id_idx ON audit.finding_event (finding_id, event_id);

    CREATE FUNCTION audit.finding_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit.finding_event is append-only: a finding''s history is never changed';
    END $$;
    CREATE TRIGGER finding_event_append_only BEFORE UPDATE OR DELETE ON audit.finding_event
        FOR EACH ROW EXECUTE FUNCTION audit.finding_event_append_only();
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE audit.finding_event;
    DROP FUNCTION audit.finding_event_append_only();
    UPDATE audit.finding SET status = 'open' WHERE status IN ('acknowledged', 'assigned');
    UPDATE audit.finding SET status = 'resolved' WHERE status = 'dismissed';
    ALTER TABLE audit.finding DROP CONSTRAINT finding_status_check;
    ALTER TABLE audit.finding ADD CONSTRAINT finding_status_check CHECK (status IN ('open', 'resolved'));
    ALTER TABLE audit.finding DROP COLUMN assigned_to, DROP COLUMN due_at, DROP COLUMN acknowledged_at,
        DROP COLUMN assigned_at, DROP COLUMN closed_at, DROP COLUMN close_reason, DROP COLUMN closed_by;
    DROP TABLE audit.workbench_session;
    """)
