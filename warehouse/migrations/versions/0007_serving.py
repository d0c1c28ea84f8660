"""Serving departments and auditors: enrolments per release, audit findings, API keys, access log.

* ``publish.enrolment``: per release, every source record's master id with its department and
  programme, so that a department can see its own enrolments (row-level security is set up by
  ``hub grants apply``).
* ``audit.finding`` / ``audit.finding_count``: cross-department consistency findings with a stable
  id, the owning department and masked evidence, and their counts per release for trends.
* ``audit.api_key`` / ``audit.access_log``: read-API keys per department (only a hash is kept) and
  one log row per access: who, what, declared purpose, when, how many results.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE publish.enrolment (
        release_no       integer NOT NULL REFERENCES publish.release (release_no),
        master_id        text NOT NULL,
        source           text NOT NULL,
        source_record_id text NOT NULL,
        department       text NOT NULL,
        program          text,
        status_raw       text,
        PRIMARY KEY (release_no, source, source_record_id)
    );
    CREATE INDEX ON publish.enrolment (release_no, master_id);
    CREATE VIEW publish.enrolment_current AS
        SELECT e.* FROM publish.enrolment e JOIN publish.current_release c USING (release_no);

    CREATE TABLE audit.finding (
        finding_id     text PRIMARY KEY,
        kind           text NOT NULL,
        department     text NOT NULL,
        master_id      text,
        summary        text NOT NULL,
        evidence       jsonb NOT NULL DEFAULT '[]',
        first_release  integer NOT NULL,
        last_release   integer NOT NULL,
        first_seen_at  timestamptz NOT NULL DEFAULT now(),
        last_seen_at   timestamptz NOT NULL DEFAULT now(),
        status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved'))
    );
    CREATE INDEX ON audit.finding (department, status);
    CREATE TABLE audit.finding_count (
        release_no  integer NOT NULL,
        kind        text NOT NULL,
        department  text NOT NULL,
        findings    integer NOT NULL,
        counted_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (release_no, kind, department)
    );

    CREATE TABLE audit.api_key (
        key_id      text PRIMARY KEY,
        department  text NOT NULL,
        key_hash    text NOT NULL,
        label       text NOT NULL,
        scopes      text[] NOT NULL DEFAULT '{}',
        created_at  timestamptz NOT NULL DEFAULT now(),
        revoked_at  timestamptz
    );
    CREATE UNIQUE INDEX ON audit.api_key (key_hash);
    -- the read API looks people up by ID number in the current release
    CREATE INDEX ON publish.master_person (release_no, id_number) WHERE id_number IS NOT NULL;
    CREATE TABLE audit.access_log (
        access_id   bigserial PRIMARY KEY,
        accessed_at timestamptz NOT NULL DEFAULT now(),
        key_id      text,
        department  text,
        endpoint    text NOT NULL,
        purpose     text,
        requested   integer NOT NULL DEFAULT 0,
        results     integer NOT NULL DEFAULT 0,
        status      integer NOT NULL,
        client      text
    );
    CREATE INDEX ON audit.access_log (department, accessed_at);
    """)


def downgrade() -> None:
    op.execute("""
    DROP INDEX publish.master_person_release_no_id_number_idx;
    DROP TABLE audit.access_log, audit.api_key, audit.finding_count, audit.finding;
    DROP VIEW publish.enrolment_current;
    DROP TABLE publish.enrolment;
    """)
