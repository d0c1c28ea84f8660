"""Sharing that holds: a tamper-evident access log, quotas shared by every API process, alerts, blocked
keys and a record of every export.

* ``audit.access_log`` gains ``master_ids`` (the master ids an answer returned), ``prev_hash`` and
  ``row_hash`` (a SHA-256 chain over the rows: each row's hash covers its content and the previous
  row's hash, so an edited or removed row breaks the chain); rows are append-only (a trigger refuses
  UPDATE and DELETE). ``purpose`` holds a purpose code of the catalogue only: the free-text purposes
  stored so far (some held personal data) are removed here.
* ``audit.api_key`` gains ``blocked_at`` / ``blocked_reason``: a key stopped by sweep detection.
* ``audit.api_quota``: requests and persons counted per scope (``key``, ``department``, ``client``),
  subject and day, in the database so that every API process counts against the same quota.
* ``audit.access_alert``: what the API noticed (a sweep of master ids, a quota exhausted, …).
* ``audit.export_log``: every file the hub wrote with personal data (ledgers, findings workbooks,
  explanation pages): who, what, why and where.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    UPDATE audit.access_log SET purpose = NULL WHERE purpose IS NOT NULL;
    ALTER TABLE audit.access_log
        ADD COLUMN master_ids text[] NOT NULL DEFAULT '{}',
        ADD COLUMN prev_hash text,
        ADD COLUMN row_hash text;
    CREATE INDEX access_log_key_id_accessed_at_idx ON audit.access_log (key_id, accessed_at);
    CREATE FUNCTION audit.access_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit.access_log is append-only: access % cannot be changed or deleted', OLD.access_id;
    END $$;
    CREATE TRIGGER access_log_is_append_only BEFORE UPDATE OR DELETE ON audit.access_log
        FOR EACH ROW EXECUTE FUNCTION audit.access_log_is_append_only();

    ALTER TABLE audit.api_key
        ADD COLUMN blocked_at timestamptz,
        ADD COLUMN blocked_reason text;

    CREATE TABLE audit.api_quota (
        scope   text NOT NULL CONSTRAINT api_quota_scope_check CHECK (scope IN ('key', 'department', 'client')),
        subject text NOT NULL,
        day     date NOT NULL,
        requests bigint NOT NULL DEFAULT 0,
        persons  bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, subject, day)
    );

    CREATE TABLE audit.access_alert (
        alert_id   bigserial PRIMARY KEY,
        raised_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        kind       text NOT NULL,
        key_id     text,
        department text,
        client     text,
        detail     text NOT NULL
    );
    CREATE INDEX access_alert_raised_at_idx ON audit.access_alert (raised_at);

    CREATE TABLE audit.export_log (
        export_id   bigserial PRIMARY KEY,
        exported_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor       text NOT NULL,
        department  text,
        kind        text NOT NULL,
        what        text NOT NULL,
        purpose     text,
        path        text,
        rows        integer
    );
    CREATE INDEX export_log_exported_at_idx ON audit.export_log (exported_at);
    """)


def downgrade() -> None:
    op.execute("""
    DROP TABLE audit.export_log;
    DROP TABLE audit.access_alert;
    DROP TABLE audit.api_quota;
    ALTER TABLE audit.api_key DROP COLUMN blocked_at, DROP COLUMN blocked_reason;
    DROP TRIGGER access_log_is_append_only ON audit.access_log;
    DROP FUNCTION audit.access_log_is_append_only();
    DROP INDEX audit.access_log_key_id_accessed_at_idx;
    ALTER TABLE audit.access_log DROP COLUMN master_ids, DROP COLUMN prev_hash, DROP COLUMN row_hash;
    """)
